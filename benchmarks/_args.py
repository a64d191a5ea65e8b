"""Command-line options shared by the benchmark scripts (each is a thin wrapper over uehead.bench)."""
from __future__ import annotations

import argparse
from pathlib import Path

from uehead.bench import BATCH_SIZES, LENGTHS, PEERS

RESULTS = Path(__file__).resolve().parent / "results"


def _ints(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(",") if x)


def _strs(v: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in v.split(",") if x.strip())


def parser(doc: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=doc)
    p.add_argument("--fp32", type=Path, required=True, help="fp32 bundle (uehead export CKPT OUT)")
    p.add_argument("--int8", type=Path, default=None, help="int8 bundle (uehead export CKPT OUT --int8)")
    p.add_argument("--checkpoint", type=Path, default=None, help="CKPT (or CKPT/model) for the PyTorch / optimum peers")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="default: physical cores")
    p.add_argument("--batch-sizes", type=_ints, default=BATCH_SIZES)
    p.add_argument("--lengths", type=_strs, default=tuple(LENGTHS))
    p.add_argument("--min-texts", type=int, default=32, help="texts per cell: max(batch size, this)")
    p.add_argument("--peers", type=_strs, default=None,
                   help=f"comma-separated subset of {', '.join(PEERS)} (default: all)")
    p.add_argument("--out", type=Path, default=RESULTS / default_out)
    return p


def bundles(a) -> list[Path]:
    return [a.fp32] + ([a.int8] if a.int8 else [])


def common(a) -> dict:
    return {"checkpoint": a.checkpoint, "repeats": a.repeats, "threads": a.threads, "batch_sizes": a.batch_sizes,
            "lengths": a.lengths, "min_texts": a.min_texts, "peers": a.peers}
