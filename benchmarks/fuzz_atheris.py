"""Coverage-guided fuzzing (atheris / libFuzzer) of the manifest loader and the batch jobs, for a bounded time.

    pip install -c constraints.txt atheris      # the [dev] extra pins it
    python benchmarks/fuzz_atheris.py [--seconds 60] [--targets manifest,readers,batch_job] [--hypothesis-examples 0]

Not part of the test suite. Each target runs in its own process for ``--seconds`` (one core,
``nice``), mutating its seeds with coverage feedback, and every input must meet its target's
contract:

* ``manifest``: the bytes as ``manifest.json`` of a bundle whose other files are a real tiny
  bundle's. Reading it raises a ``BundleError`` or gives a Manifest that survives a
  ``to_dict`` round trip and loads (sessions built, no checksums) or fails with a ``BundleError``.
* ``readers``: the bytes as a JSONL, CSV or Parquet input (the first byte picks the format).
  Reading every chunk raises nothing but a ``DataError``.
* ``batch_job``: the same inputs through ``predict_file`` with a deterministic fake model, killed at
  a point the input picks and resumed (``tests/fuzz_batch_checks.py``): the job completes
  or raises a ``DataError``, loses, repeats and reorders no row, and a resumed job equals the
  uninterrupted one and is refused for another input or model.

Anything else (another exception, a broken invariant, a crash or hang of the process) is a failure,
recorded with its input. ``--hypothesis-examples N`` also runs the property tests of
``tests/runtime/test_fuzz_batch.py`` with N examples per input format. Writes
benchmarks/results/fuzz.json: per target the inputs tried, the outcomes and the failures.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TESTS = [str(ROOT / "tests"), str(ROOT / "tests" / "runtime")]
TARGETS = ("manifest", "readers", "batch_job")
FORMATS = ("jsonl", "csv", "parquet")
STATS_EVERY = 200  # inputs between two writes of the child's counters
#: What each target's inputs must do (a broken contract is an AssertionError, counted apart).
CONTRACTS = {
    "manifest": "a BundleError, or a manifest that survives a to_dict round trip and loads or fails with a "
                "BundleError",
    "readers": "a DataError, or every chunk read",
    "batch_job": "a DataError, or an output with exactly the input's rows in order; killed and resumed equals "
                 "uninterrupted; resumes with another input or model refused",
}
#: Values the manifest mutator puts in place of a field's: wrong types, edge values, odd strings.
ODD_VALUES = (None, "128", 128, -1, 0, 2**64, 1.5, float("nan"), float("inf"), "", "abc", [], [1, 2], ["a", "b"], {},
              {"x": 1}, True, False, "right", "left", "\ud800", "../x", "adue", "sr", 999)


# ----------------------------------------------------------------------------- the child: one target
def _seeds(target: str, folder: Path, bundle: Path) -> None:
    """A few valid inputs to start from."""
    folder.mkdir(parents=True, exist_ok=True)
    if target == "manifest":
        (folder / "manifest").write_bytes((bundle / "manifest.json").read_bytes())
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": i, "text": t, "note": n} for i, (t, n) in
            enumerate([("good film", "a"), (None, "b"), ("bad \\ud800", None), ("", "c"), ("dull", "d")])]
    (folder / "jsonl").write_bytes(b"\x00\x03" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    (folder / "csv").write_bytes(b"\x01\x02id,text,note\n1,good,x\n2,\"multi\nline\",y\n3,,z\n")
    table = pa.Table.from_pylist([dict(r, text=None if r["text"] is None else r["text"].replace("\\", "")) for r in rows])
    path = folder / "parquet.tmp"
    pq.write_table(table, path, row_group_size=2)
    (folder / "parquet").write_bytes(b"\x02\x01" + path.read_bytes())
    path.unlink()


def _split(data: bytes) -> tuple[str, int, bytes]:
    """(input format, a small number for the options, the file's bytes) from a fuzz input."""
    fmt = FORMATS[data[0] % 3] if data else "jsonl"
    knob = data[1] if len(data) > 1 else 0
    return fmt, knob, data[2:]


class Child:
    """Runs one target inside atheris; counts outcomes; appends failures to a JSONL file."""

    def __init__(self, target: str, work: Path, stats: Path, failures: Path, bundle: Path):
        self.target, self.work, self.stats, self.failures, self.bundle = target, work, stats, failures, bundle
        self.counts: dict[str, int] = {}
        self.cases = 0

    def record(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self.cases += 1
        if self.cases % STATS_EVERY == 0:
            self.stats.write_text(json.dumps({"cases": self.cases, "outcomes": self.counts}))

    def fail(self, data: bytes, exc: BaseException) -> None:
        with open(self.failures, "a", encoding="utf-8") as f:
            f.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000],
                                "input_base64": base64.b64encode(data[:4096]).decode()}) + "\n")
        self.record("failure")

    def __call__(self, data: bytes) -> None:
        case = Path(tempfile.mkdtemp(dir=self.work))
        try:
            self.record(getattr(self, f"run_{self.target}")(data, case))
        except Exception as exc:  # anything but the contract's errors is a finding
            self.fail(data, exc)
        finally:
            import shutil

            shutil.rmtree(case, ignore_errors=True)

    def run_manifest(self, data: bytes, case: Path) -> str:
        import shutil

        from uehead.bundle import BundleError, load_manifest, manifest_from_dict
        from uehead.runtime import load

        for p in self.bundle.iterdir():
            if p.name != "manifest.json":
                shutil.copyfile(p, case / p.name)
        (case / "manifest.json").write_bytes(data)
        try:
            manifest = load_manifest(case, check_files=False)
        except BundleError:
            return "rejected"
        again = manifest_from_dict(json.loads(json.dumps(manifest.to_dict())), case / "manifest.json")
        assert json.dumps(again.to_dict()) == json.dumps(manifest.to_dict()), "a to_dict round trip changed it"
        try:
            load(case, check_files=False, warmup=False, threads=1)
        except BundleError:
            return "parsed, load refused"
        return "loaded"

    def run_readers(self, data: bytes, case: Path) -> str:
        from uehead.errors import DataError
        from uehead.runtime.batch_job import check_job
        from uehead.runtime.batch_readers import read_chunks, row_count_estimate

        fmt, knob, body = _split(data)
        src = case / f"in.{fmt}"
        src.write_bytes(body)
        try:
            job = check_job(src, case / "out.jsonl", text_column="text", id_column=None, batch_size=8,
                            chunk_rows=1 + knob % 5, keep_all_columns=bool(knob & 8))
            rows = sum(len(c) for c in read_chunks(src, fmt, text_column="text", id_column=job.id_column,
                                                   chunk_rows=job.chunk_rows, keep_columns=job.keep_columns))
            row_count_estimate(src, fmt)
        except DataError:
            return "rejected"
        return f"read ({'rows' if rows else 'empty'})"

    def run_batch_job(self, data: bytes, case: Path) -> str:
        from fuzz_batch_checks import KILL_MODES, Kill, check_batch_job

        fmt, knob, body = _split(data)
        src = case / f"in.{fmt}"
        src.write_bytes(body)
        kill = Kill(KILL_MODES[knob % 3], 1 + (knob >> 2) % 4)
        return check_batch_job(src, case / "work", out_fmt=FORMATS[(knob >> 4) % 3], chunk_rows=1 + (knob >> 6),
                               kill=kill, keep_all_columns=bool(knob & 2))


def _paths(doc, out=None) -> list:
    """Every (container, key) of a parsed JSON document."""
    out = [] if out is None else out
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        out.append((doc, key))
        _paths(value, out)
    return out


def json_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    """Mostly structure-aware mutations of a JSON document (a field set to an odd value, deleted or
    copied); libFuzzer's byte mutations otherwise, or when the bytes are not JSON."""
    import random

    import atheris

    rng = random.Random(seed)
    try:
        doc = json.loads(data)
        paths = _paths(doc)
    except (ValueError, RecursionError):
        paths = []
    if not paths or rng.random() < 0.25:
        return atheris.Mutate(data, max_size)
    container, key = rng.choice(paths)
    op = rng.random()
    if op < 0.7:
        container[key] = rng.choice(ODD_VALUES)
    elif op < 0.85 and isinstance(container, dict):
        del container[key]
    else:
        container[key] = json.loads(json.dumps(rng.choice(paths)[0]))
    out = json.dumps(doc).encode()
    return out if len(out) <= max_size else atheris.Mutate(data, max_size)


def child_main(a) -> None:
    import atheris

    sys.path[:0] = TESTS
    with atheris.instrument_imports(include=["uehead"]):
        import uehead.bundle  # noqa: F401
        import uehead.manifest_schema  # noqa: F401
        import uehead.runtime.batch  # noqa: F401
        import uehead.runtime.batch_readers  # noqa: F401
        import uehead.runtime.batch_sinks  # noqa: F401
    import pyarrow as pa

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    child = Child(a.target, Path(a.work), Path(a.stats), Path(a.failures), Path(a.bundle))
    _seeds(a.target, Path(a.corpus), Path(a.bundle))
    options = {"custom_mutator": json_mutator} if a.target == "manifest" else {}
    atheris.Setup([sys.argv[0], a.corpus, f"-max_total_time={a.seconds}", "-timeout=60", "-rss_limit_mb=3072",
                   "-max_len=65536", "-print_final_stats=1", f"-artifact_prefix={a.artifacts}/"], child, **options)
    atheris.Fuzz()


# ----------------------------------------------------------------------------- the parent: run, collect, report
def _run_target(target: str, seconds: int, bundle: Path, scratch: Path) -> dict:
    folder = scratch / target
    for sub in ("corpus", "work", "artifacts"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    stats, failures = folder / "stats.json", folder / "failures.jsonl"
    cmd = ["nice", "-n", "19", sys.executable, __file__, "--child", "--target", target, "--seconds", str(seconds),
           "--bundle", str(bundle), "--corpus", str(folder / "corpus"), "--work", str(folder / "work"),
           "--artifacts", str(folder / "artifacts"), "--stats", str(stats), "--failures", str(failures)]
    env = dict(os.environ, OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 600)
    log = proc.stdout + proc.stderr
    executed = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    features = re.findall(r"\bft: (\d+)", log)
    found = [json.loads(line) for line in failures.read_text().splitlines()] if failures.is_file() else []
    artifacts = sorted(p.name for p in (folder / "artifacts").iterdir())
    counted = json.loads(stats.read_text()) if stats.is_file() else {"cases": 0, "outcomes": {}}
    broken = sum(f["error"].startswith("AssertionError") for f in found)
    return {"contract": CONTRACTS[target], "seconds": round(time.perf_counter() - started, 1),
            "exit_code": proc.returncode, "inputs_tried": int(executed[-1]) if executed else counted["cases"],
            "crashed": len(found) - broken + len(artifacts),
            "broken_contract": broken,  # for batch_job: rows lost, duplicated or reordered, or jobs mixed
            "outcomes_sampled": counted["outcomes"], "coverage_features": int(features[-1]) if features else None,
            "corpus_size": len(list((folder / "corpus").iterdir())), "failures": len(found),
            "process_crashes_or_hangs": artifacts, "failure_examples": found[:10],
            "ok": not found and not artifacts and proc.returncode == 0,
            "log_tail": log[-1500:] if (found or artifacts or proc.returncode) else ""}


def _hypothesis_campaign(examples: int) -> dict:
    env = dict(os.environ, UEHEAD_FUZZ_EXAMPLES=str(examples), TOKENIZERS_PARALLELISM="false")
    cmd = ["nice", "-n", "19", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "--hypothesis-show-statistics", str(ROOT / "tests" / "runtime" / "test_fuzz_batch.py")]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    counts = [(int(p), int(f)) for p, f in re.findall(r"(\d+) passing, (\d+) failing", proc.stdout)]
    return {"max_examples_per_format": examples, "inputs_tried": sum(p + f for p, f in counts),
            "failing": sum(f for _, f in counts), "ok": proc.returncode == 0,
            "seconds": round(time.perf_counter() - started, 1),
            "summary": proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:],
            "failure_tail": "" if proc.returncode == 0 else proc.stdout[-6000:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=60, help="fuzzing time per target")
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--hypothesis-examples", type=int, default=0, help="0 = skip the hypothesis campaign")
    p.add_argument("--out", type=Path, default=HERE / "results" / "fuzz.json")
    for name in ("target", "bundle", "corpus", "work", "artifacts", "stats", "failures"):
        p.add_argument(f"--{name}", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child_main(a)
    import atheris  # noqa: F401  (fail here, not in every child, when it is missing)

    sys.path[:0] = TESTS
    from tiny_bundle import make_tiny_bundle

    report = {"generated_by": "benchmarks/fuzz_atheris.py", "python": platform.python_version(),
              "atheris": _version("atheris"), "seconds_per_target": a.seconds, "targets": {}}
    with tempfile.TemporaryDirectory(prefix="uehead-fuzz-") as scratch:
        bundle = make_tiny_bundle(Path(scratch) / "bundle")
        for target in [t for t in a.targets.split(",") if t]:
            print(f"fuzzing {target} for {a.seconds} s ...", file=sys.stderr, flush=True)
            report["targets"][target] = result = _run_target(target, a.seconds, bundle, Path(scratch))
            print(f"  {result['inputs_tried']} inputs, {result['failures']} failures, "
                  f"crashes/hangs: {result['process_crashes_or_hangs'] or 'none'}", file=sys.stderr)
    if a.hypothesis_examples:
        report["hypothesis_test_fuzz_batch"] = _hypothesis_campaign(a.hypothesis_examples)
    report["all_ok"] = all(r["ok"] for r in report["targets"].values()) and \
        report.get("hypothesis_test_fuzz_batch", {"ok": True})["ok"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {a.out}", file=sys.stderr)


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
