"""CPU benchmarks of the torch-free runtime (``uehead bench``), side by side with the peers.

    uehead bench BUNDLE --json OUT [--checkpoint CKPT] [--repeats N]

Modules (each imports only ones listed above it; all torch-free but ``peers``, which ``run``
imports only when a checkpoint is given):

* :mod:`~uehead.bench.engines`: engine names (the bundles', :data:`PEERS`);
* :mod:`~uehead.bench.texts`: the benchmark texts (Rotten Tomatoes sentences, ~64 and ~128 tokens);
* :mod:`~uehead.bench.timing`: per-stage and end-to-end timings (medians over repeats);
* :mod:`~uehead.bench.flops`: a BERT FLOP model and the backbone's dimensions;
* :mod:`~uehead.bench.machine`: CPU, versions, load average;
* :mod:`~uehead.bench.proc`: fresh-process measurements (cold start, peak RSS, matmul peak);
* :mod:`~uehead.bench.overhead`: the head's per-batch overhead (``head_overhead_report``);
* :mod:`~uehead.bench.report`: tables, target checks, JSON;
* :mod:`~uehead.bench.scaling`: time per text against sequence length and batch size (``scaling_sweep``);
* :mod:`~uehead.bench.peers`: PyTorch eager and optimum (needs ``pip install 'uehead[export]'``);
* :mod:`~uehead.bench.run`: ``run_bench``, every section in one run.

The names below are the public entry points, re-exported from those modules.
"""
from __future__ import annotations

from uehead.bench.engines import BASELINE, PEERS
from uehead.bench.flops import backbone_dims, bert_flops
from uehead.bench.machine import machine_info
from uehead.bench.overhead import OVERHEAD_TEXTS, head_overhead, head_overhead_report
from uehead.bench.proc import coldstart, peak_gflops
from uehead.bench.report import check_targets, fixed_width_table, print_report, write_json
from uehead.bench.run import BATCH_SIZES, PARTS, run_bench
from uehead.bench.scaling import ExactLengthInputs, scaling_sweep
from uehead.bench.texts import LENGTHS, bench_texts, model_texts
from uehead.bench.timing import e2e_times, stage_times

__all__ = ["BASELINE", "BATCH_SIZES", "ExactLengthInputs", "LENGTHS", "OVERHEAD_TEXTS", "PARTS", "PEERS",
           "backbone_dims", "bench_texts", "bert_flops", "check_targets", "coldstart", "e2e_times",
           "fixed_width_table", "head_overhead", "head_overhead_report", "machine_info", "model_texts",
           "peak_gflops", "print_report", "run_bench", "scaling_sweep", "stage_times", "write_json"]
