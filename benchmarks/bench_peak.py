"""Backbone GFLOP/s against the CPU's measured fp32 and int8 peaks (torch-free; peers with --checkpoint).

    python benchmarks/bench_peak.py --fp32 B32 [--int8 B8] [--checkpoint CKPT] [--batch-sizes 8,32]

The fp32 peak is the best of numpy's BLAS and ONNX Runtime on a 2048^3 fp32 matmul on the same
threads (fresh process); the int8 peak is the best of ONNX Runtime's int8 GEMM ops on 2048^3
(MatMulInteger u8 x s8, and DynamicQuantizeMatMul / MatMulIntegerToFloat, the fused ops a dynamically
quantised backbone runs), in GOP/s (2 per multiply-add). Backbone FLOPs are counted for the padded
shapes actually run (see uehead.bench.flops.bert_flops); an int8 backbone is reported against both
peaks (pct_of_peak, pct_of_int8_peak). With --checkpoint, PyTorch eager's and optimum's forward GFLOP/s
are measured too (their end-to-end rows). Writes benchmarks/results/peak.json.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _args import bundles, common, parser

from uehead.bench import run_bench

if __name__ == "__main__":
    p = parser(__doc__, "peak.json")
    p.set_defaults(batch_sizes=(8, 32), peers=("pytorch-fp32", "optimum-fp32", "optimum-o3-fp32", "optimum-int8"))
    a = p.parse_args()
    parts = ("peak", "stages", "e2e") if a.checkpoint else ("peak", "stages")
    run_bench(bundles(a), a.out, parts=parts, **common(a))
