"""Cold start (import + load + first prediction) and peak RSS in fresh processes.

    python benchmarks/bench_coldstart.py --fp32 B32 [--int8 B8] [--checkpoint CKPT] [--runs 7]

Each bundle, and with --checkpoint a torch + transformers process doing the same, runs in
--runs fresh interpreters after one discarded run (which may build caches, e.g. the kernels');
medians. Peak RSS is the child's VmHWM after the first prediction, and again after one batch of
32 ~128-token texts. Prints a table and writes benchmarks/results/coldstart.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _args import bundles, common, parser

from uehead.bench import run_bench

if __name__ == "__main__":
    p = parser(__doc__, "coldstart.json")
    p.add_argument("--runs", type=int, default=7)
    a = p.parse_args()
    run_bench(bundles(a), a.out, parts=("coldstart",), coldstart_runs=a.runs, **common(a))
