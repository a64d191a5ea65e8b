"""Per-stage and end-to-end CPU benchmark: uehead fp32/int8 bundles vs PyTorch eager and optimum.

    python benchmarks/bench_e2e.py --fp32 B32 --int8 B8 --checkpoint CKPT [--repeats 7]

One run, same texts (Rotten Tomatoes sentences: short, ~64 and ~128 tokens), batch sizes
1, 8, 32, 128, engines interleaved per repeat, medians. The peers include optimum's strongest
configurations (ORTOptimizer O2 / O3, dynamic int8 of those graphs, static QDQ int8 calibrated on
train sentences; see uehead.bench.peers). Also measures the fp32 matmul and int8 GEMM peaks on the
same threads, so each backbone's GFLOP/s is reported as a % of them. Prints tables and writes
benchmarks/results/e2e.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _args import bundles, common, parser

from uehead.bench import run_bench

if __name__ == "__main__":
    p = parser(__doc__, "e2e.json")
    p.add_argument("--intra-op-engines", action="store_true",
                   help="also time each bundle with shard_batches=False (<engine>-intraop), side by side")
    a = p.parse_args()
    run_bench(bundles(a), a.out, parts=("peak", "stages", "e2e"), intra_op_engines=a.intra_op_engines, **common(a))
