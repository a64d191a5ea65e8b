"""Uncertainty under domain shift: heads trained on one dataset, scored on another's test split.

    python benchmarks/shift_eval.py --work runs/protocols/minilm [--pairs sst2:rotten_tomatoes,rotten_tomatoes:sst2]
        [--datasets ../shared/datasets] [--out benchmarks/results/shift_minilm]

For every pair SOURCE:TARGET, protocol (``uehead``, ``authors``: the folders
``benchmarks/run_protocol_table.sh`` writes) and seed, the merged model of the SOURCE run (kept
by ``--keep-models`` in ``WORK/uehead``) featurises TARGET's test texts; SR, entropy, MD, RMD
(the run's stored statistics) and the run's AdUE / ALIEN heads score them, and every score's
ROC-AUC against the model's errors on TARGET is set beside the same run's in-domain test ROC-AUC
(``scores/test.npz``), with the run's do-no-harm default score (``training.json``) beside SR. RDE is left out: its fitted model is not stored in a checkpoint. Labels
are matched by name (both sets here are negative / positive sentiment). Every score is higher =
more uncertain; the table reports head - SR in ROC-AUC points, mean +- std over seeds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("sr", "entropy", "md", "rmd", "adue", "alien")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="folder holding uehead/ and authors/ run folders")
    p.add_argument("--pairs", default="sst2:rotten_tomatoes,rotten_tomatoes:sst2",
                   help="SOURCE:TARGET dataset pairs (default: sst2:rotten_tomatoes,rotten_tomatoes:sst2)")
    p.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets",
                   help="folder of the dataset folders (default ../shared/datasets)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "shift_minilm",
                   help="output stem: OUT.json and OUT.md (default benchmarks/results/shift_minilm)")
    return p


def _data(datasets: Path, name: str) -> str:
    return name if name == "rotten_tomatoes" else str(datasets / name)


def _features(model_folder: Path, texts, labels, max_length: int):
    """z and logits of ``texts`` from the merged model in ``model_folder`` (both protocols' runs of a
    dataset x seed share it, so it is featurised once)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from uehead.training import backbones
    from uehead.training.data import encode
    from uehead.training.features import extract

    model = AutoModelForSequenceClassification.from_pretrained(model_folder, local_files_only=True).float().eval()
    tok = AutoTokenizer.from_pretrained(model_folder, local_files_only=True)
    return extract(model, backbones.family_of(model.config), encode(tok, texts, labels, max_length),
                   pad_id=int(tok.pad_token_id), device=torch.device("cpu"), progress=False)


def _target_scores(feats, run: Path) -> dict[str, np.ndarray]:
    """Every method's U on the features with the run's heads and MD statistics, plus ``errors``."""
    from uehead.checkpoint import read_head, read_md
    from uehead.runtime.distances import Baselines
    from uehead.scores import entropy, softmax_response
    from uehead.training.heads import forward_numpy, score_numpy

    out = {"sr": softmax_response(feats.logits), "entropy": entropy(feats.logits)}
    md = Baselines.from_arrays(read_md(run, False))
    out["md"], out["rmd"] = md.md(feats.z), md.rmd(feats.z)
    for kind in ("adue", "alien"):
        weights, cfg = read_head(run, kind)
        out[kind] = score_numpy(kind, forward_numpy(weights, feats.z), cfg.get("lam", 100.0))
    out["errors"] = feats.errors
    out["accuracy"] = np.array(float((feats.predictions == feats.labels).mean()))
    return out


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from uehead.checkpoint import read_scores, read_training
    from uehead.datasets import load_dataset
    from uehead.evaluation import metrics as M
    from uehead.jsonio import to_jsonable

    result = {"work": str(args.work), "methods": METHODS, "pairs": {}}
    lines = ["# Uncertainty under domain shift (heads trained on SOURCE, scored on TARGET's test split)", "",
             "ROC-AUC x100 of each score against the model's errors; head - SR in points, mean ± std over seeds. "
             f"Produced by `python benchmarks/shift_eval.py --work {args.work}`.", ""]
    for pair in args.pairs.split(","):
        source, target = pair.split(":")
        tgt = load_dataset(_data(args.datasets, target), splits=("test",))
        entry = result["pairs"][pair] = {}
        features = {}  # model folder -> features of TARGET's test texts
        for protocol in ("uehead", "authors"):
            rows = []
            for seed_dir in sorted((args.work / protocol / source).glob("seed*")):
                record = read_training(seed_dir)
                names = record["label_names"]
                if list(names) != list(tgt.label_names):
                    raise SystemExit(f"{seed_dir}: labels {names} differ from {target}'s {list(tgt.label_names)}")
                model_folder = args.work / "uehead" / source / seed_dir.name / "model"
                if model_folder not in features:
                    features[model_folder] = _features(model_folder, list(tgt["test"].texts), tgt["test"].labels,
                                                       int(record["max_length"]))
                shifted = _target_scores(features[model_folder], seed_dir)
                own = read_scores(seed_dir, "test")
                default = (record.get("default_score") or {}).get("chosen", "sr")
                row = {"seed": record["seed"], "default": default, "accuracy_in_domain": record["accuracy"]["test"],
                       "accuracy_shifted": float(shifted["accuracy"]), "in_domain": {}, "shifted": {}}
                for m in METHODS:
                    row["in_domain"][m] = M.roc_auc(own[m], own["errors"])
                    row["shifted"][m] = M.roc_auc(shifted[m], shifted["errors"])
                rows.append(row)
                print(f"shift {pair} {protocol} {seed_dir.name}: accuracy {row['accuracy_shifted']:.3f}, "
                      + ", ".join(f"{m} {row['shifted'][m]:.3f}" for m in METHODS), file=sys.stderr)
            entry[protocol] = rows
        lines += [f"## {source} → {target}", "",
                  "| protocol | where | accuracy | " + " | ".join(METHODS) + " | AdUE − SR | ALIEN − SR | default − SR |",
                  "|:--|:--|--:|" + "--:|" * (len(METHODS) + 3)]
        for protocol, rows in entry.items():
            if not rows:
                continue
            for where in ("in_domain", "shifted"):
                acc = M.mean_std(r["accuracy_in_domain" if where == "in_domain" else "accuracy_shifted"] for r in rows)
                cells = [M.format_mean_std(M.mean_std(r[where][m] for r in rows)) for m in METHODS]
                gains = [M.format_mean_std(M.mean_std(r[where][h] - r[where]["sr"] for r in rows))
                         for h in ("adue", "alien")]
                gains.append(M.format_mean_std(M.mean_std(r[where][r["default"]] - r[where]["sr"] for r in rows))
                             + " (" + ", ".join(r["default"] for r in rows) + ")")
                label = "in-domain test" if where == "in_domain" else f"{target} test"
                lines.append(f"| {protocol} | {label} | {M.format_mean_std(acc)} | " + " | ".join(cells + gains) + " |")
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    (args.out.parent / f"{args.out.name}.json").write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    (args.out.parent / f"{args.out.name}.md").write_text("\n".join(lines) + "\n")
    print(f"shift_eval: wrote {args.out}.json and .md", file=sys.stderr)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
