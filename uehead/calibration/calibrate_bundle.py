"""``uehead calibrate``: fit the decision layer of a bundle on labelled held-out rows and write a
calibrated copy (torch-free: predictions come from :func:`uehead.runtime.load`).

    from uehead.calibration import calibrate
    result = calibrate("bundle/", "rotten_tomatoes", out="bundle-calibrated/")   # split "valid"
    print(result.table)

The new bundle is the input's files plus ``calibration.json`` (:mod:`.apply`) listed with its
sha256 in a rewritten manifest. It is assembled in a temporary sibling folder and renamed into
place, so ``out`` either does not exist or is complete; the input bundle is never changed.
Calibrating an already calibrated bundle replaces its section. The calibration rows must not
have been used to train the model or to choose its heads (use the validation split), and the
guarantees hold for future inputs exchangeable with them.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from uehead import __version__
from uehead._extras import installed_versions
from uehead.bundle import CALIBRATION_FILE, FileSpec, Manifest, load_manifest, write_manifest
from uehead.calibration.apply import Calibration, load_calibration
from uehead.calibration.fit import check_enough_rows, check_options, fit_calibration
from uehead.datasets import DataFileOptions, load_split
from uehead.errors import UnknownScoreError
from uehead.manifest_checksum import CHECKSUM_FILE
from uehead.jsonio import write_json_atomic
from uehead.scores import score_names

__all__ = ["calibrate", "CalibrationResult", "format_report", "write_calibrated_bundle"]


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` did: the new bundle's folder, the fitted section, the printed table,
    and whether an existing section of the input was replaced."""

    out: Path
    calibration: Calibration
    table: str
    replaced: bool

    def __str__(self) -> str:
        return self.table


def calibrate(bundle: str | os.PathLike, data: str | os.PathLike, *, out: str | os.PathLike, split: str = "valid",
              score: str | None = None, risk=(0.05, 0.1), delta: float = 0.1, coverage=(0.9, 0.95),
              method: str = "lac", class_conditional: bool = False, text_column: str = "text",
              label_column: str = "label", batch_size: int = 32, verbose: bool = True,
              data_options: DataFileOptions | None = None) -> CalibrationResult:
    """Calibrate ``bundle`` on labelled rows and write the calibrated copy to ``out``.

    Args:
        data: a dataset folder or ``"rotten_tomatoes"`` (its ``split``), or a JSONL / CSV / Parquet
            file (labels as the bundle's label names or ids): every row, with ``text_column`` and
            ``label_column``, when ``data_options`` is None; else its ``split`` part by
            ``data_options`` (:class:`~uehead.datasets.DataFileOptions`: columns, split column or the
            seeded fractions training used, so ``split="valid"`` is training's valid rows).
        score: the score to calibrate (default: the bundle's default kind); any score the bundle
            has: sr, entropy, its head kinds, md / rmd when it has baselines.
        risk: risk levels r (the first is the default): accept when score <= a threshold certified by
            Learn then Test so that P(error rate among accepted > r) <= ``delta``.
        coverage: conformal coverage levels 1 - alpha (the first is the default).
        method: "lac" (default) or "aps" nonconformity; ``class_conditional`` for Mondrian sets.
        verbose: print the table.
    Raises:
        DataError: a level outside (0, 1), an unknown method, bad labels, too few rows (the
        message gives the minimum); UnknownScoreError: a score the bundle lacks;
        FileExistsError / ValueError: ``out`` exists, or is the input; BundleError: a broken input.
    """
    risks, delta, coverages = check_options(risk, delta, coverage, method)
    src, dst = Path(bundle), Path(out)
    _check_destination(src, dst)
    manifest = load_manifest(src)
    available = score_names([h.kind for h in manifest.head.heads], distances=manifest.baselines is not None)
    score = manifest.head.default_kind if score is None else score
    if score not in available:
        raise UnknownScoreError(f"score {score!r} is not one this bundle has ({', '.join(available)}).",
                                path=src, fix="pass one of them with --score.")
    name, rows = load_split(data, split, label_names=manifest.labels, text_column=text_column,
                            label_column=label_column, options=data_options)
    check_enough_rows(len(rows), risks, delta)
    from uehead.runtime import load  # noqa: PLC0415  (onnxruntime: only when calibrating)

    preds = load(src, check_files=False).predict(rows.texts, batch_size=batch_size, distances=True)  # checked above
    cal = fit_calibration(preds.probs, rows.labels, preds.scores, score=score, label_names=manifest.labels,
                          graphs={"backbone": manifest.backbone.sha256, "head": manifest.head.sha256}, data=name,
                          risk=risks, delta=delta, coverage=coverages, method=method,
                          class_conditional=class_conditional,
                          writer={"uehead": __version__, **installed_versions(("numpy",))})
    replaced = manifest.calibration is not None
    write_calibrated_bundle(src, dst, manifest, cal)
    table = format_report(cal, replaced=replaced, out=dst)
    if verbose:
        print(table)
        sys.stdout.flush()
    return CalibrationResult(dst, cal, table, replaced)


def _check_destination(src: Path, dst: Path) -> None:
    s, d = src.resolve(), dst.resolve()
    if d == s:
        raise ValueError(f"--out {dst} is the input bundle; calibration writes a new bundle and never changes the "
                         "input: name another folder.")
    if s in d.parents:
        raise ValueError(f"--out {dst} is inside the input bundle {src}; name a folder outside it.")
    if dst.exists():
        raise FileExistsError(f"{dst} already exists; remove it or name another --out folder.")


def write_calibrated_bundle(src: Path, dst: Path, manifest: Manifest, cal: Calibration) -> Path:
    """Copy the bundle at ``src`` to ``dst`` with ``cal`` as its calibration section, atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp)
        # The copy gets a new manifest, so a detached checksum of the input's would be stale.
        (tmp / CHECKSUM_FILE).unlink(missing_ok=True)
        if manifest.calibration is not None and manifest.calibration.file != CALIBRATION_FILE:
            (tmp / manifest.calibration.file).unlink(missing_ok=True)
        write_json_atomic(tmp / CALIBRATION_FILE, cal.to_dict(), indent=1)
        write_manifest(tmp, dataclasses.replace(manifest, calibration=FileSpec(CALIBRATION_FILE, "")))
        written = load_manifest(tmp)  # read back as a runtime would: checksums and graph match
        load_calibration(tmp, written)
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def _fraction(level: dict) -> str:
    return "none" if level["threshold"] is None else f"{level['accepted_fraction']:.3f}"


def format_report(cal: Calibration, *, replaced: bool = False, out: Path | None = None) -> str:
    """The table ``uehead calibrate`` prints, from ``cal.report``."""
    from uehead.bench.report import fixed_width_table as format_table  # noqa: PLC0415

    rep = cal.report
    lines = [f"calibrated {cal.score!r} on {cal.data} (n = {cal.n_rows}, error rate {rep['error_rate']:.3f}); "
             f"defaults: risk {cal.default_risk:g}, coverage {cal.default_coverage:g}"]
    if replaced:
        lines.append("note: the input bundle was already calibrated; its calibration section is replaced.")
    risk_cols = [f"risk {r:g}" for r in cal.risks]
    rows = [{"score": name + (" *" if name == cal.score else ""),
             **{col: _fraction(level) for col, level in zip(risk_cols, levels)}}
            for name, levels in rep["risk"].items()]
    lines += ["", format_table(rows, ["score", *risk_cols],
                               title=f"accepted fraction of the calibration rows at each risk level, delta "
                                     f"{rep['delta']:g} (each score at its own certified threshold; none = no "
                                     "threshold reaches r; * = calibrated)")]
    set_rows = [{"coverage": f"{s['coverage']:g}", "method": s["method"] + (" (per class)" if s["class_conditional"]
                                                                          else ""),
                 "empirical coverage": f"{s['empirical_coverage']:.3f}", "mean set size": f"{s['mean_set_size']:.3f}",
                 "empty sets": f"{s['empty_fraction']:.3f}"} for s in rep["sets"]]
    lines += ["", format_table(set_rows, ["coverage", "method", "empirical coverage", "mean set size", "empty sets"],
                               title=f"prediction sets ({rep['held_out']})")]
    prob = rep["probability"]
    raw = prob["raw"]
    raw_text = ("raw score is not a probability" if raw is None
                else f"raw ECE {raw['ece']:.4f}, Brier {raw['brier']:.4f}")
    lines += ["", f"P(error) from {cal.score!r} ({rep['held_out']}): {raw_text}; calibrated ECE "
                  f"{prob['calibrated']['ece']:.4f}, Brier {prob['calibrated']['brier']:.4f}"]
    lines += [f"note: {n}" for n in rep["notes"]]
    if out is not None:
        lines.append(f"wrote {out}")
    return "\n".join(lines)
