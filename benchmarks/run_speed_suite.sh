#!/usr/bin/env bash
# Every speed figure of the README's "Speed" section, one script, on a quiet machine:
#   bash benchmarks/run_speed_suite.sh
# Bundles: the main job's checkpoint (artifacts/ckpt-minilm-rt) exported at max_length 128, so the 128-token
# cells are not cut at 64 (short texts are the same either way). Steps are skipped when their output exists
# (delete it to re-measure). Settings through the environment: THREADS (default: physical cores), REPEATS,
# SMOL_CKPT (a SmolLM2 checkpoint for the decoder rows; skipped when absent), OUT (results folder).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CKPT=${CKPT:-artifacts/ckpt-minilm-rt}
OUT=${OUT:-benchmarks/results}
REPEATS=${REPEATS:-9}
THREADS_ARG=()
[ -n "${THREADS:-}" ] && THREADS_ARG=(--threads "$THREADS")
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
B32=artifacts/bundle-fp32-l128
B8=artifacts/bundle-int8-l128
[ -d "$B32" ] || .venv/bin/uehead export "$CKPT" "$B32" --max-length 128
[ -d "$B8" ] || .venv/bin/uehead export "$CKPT" "$B8" --int8 --max-length 128 --data rotten_tomatoes
uptime
# 1. end to end, every peer (optimum defaults, O2/O3, their int8, static int8), both peaks, the head's overhead
[ -f "$OUT/e2e_peers.json" ] || "$PY" benchmarks/bench_e2e.py --fp32 "$B32" --int8 "$B8" --checkpoint "$CKPT" \
    --batch-sizes 32 --lengths short,t128 --repeats "$REPEATS" --intra-op-engines "${THREADS_ARG[@]}" \
    --out "$OUT/e2e_peers.json"
# 2. the head's cost on lone batches (fused kernel vs head graph + kernels) and in a batch job
[ -f "$OUT/overhead_lone.json" ] || "$PY" -c "
import json, sys
from uehead.bench import head_overhead_report
r = head_overhead_report(sys.argv[1], repeats=5${THREADS:+, threads=$THREADS})
json.dump(r, open(sys.argv[2], 'w'), indent=2)" "$B32" "$OUT/overhead_lone.json"
# 3. how cost grows with sequence length and batch size
[ -f "$OUT/scaling.json" ] || "$PY" benchmarks/bench_scaling.py --fp32 "$B32" --int8 "$B8" "${THREADS_ARG[@]}" \
    --out "$OUT/scaling.json" --plot "$OUT/scaling.png"
# 3b. tokens per single-thread backbone call (load(call_tokens=...)), end to end
[ -f "$OUT/call_tokens.json" ] || "$PY" benchmarks/bench_call_tokens.py --fp32 "$B32" --int8 "$B8" "${THREADS_ARG[@]}" \
    --repeats "$REPEATS" --out "$OUT/call_tokens.json"
# 4. the int8, fusion and whole-last-layer variants of the backbone graph (export flags), backbone sessions side by side
V=artifacts/variants
[ -d "$V/fp32-fused" ] || .venv/bin/uehead export "$CKPT" "$V/fp32-fused" --fusions
[ -d "$V/int8-fused" ] || .venv/bin/uehead export "$CKPT" "$V/int8-fused" --int8 --fusions --data rotten_tomatoes
[ -d "$V/int8-static" ] || .venv/bin/uehead export "$CKPT" "$V/int8-static" --int8 --int8-method static \
    --data rotten_tomatoes
[ -d "$V/fp32-full" ] || .venv/bin/uehead export "$CKPT" "$V/fp32-full" --full-last-layer
[ -d "$V/int8-full" ] || .venv/bin/uehead export "$CKPT" "$V/int8-full" --int8 --full-last-layer --data rotten_tomatoes
[ -f "$OUT/int8_variants.json" ] || "$PY" benchmarks/bench_int8.py --fp32 "$B32" --int8 "$B8" \
    --also "fp32-fused=$V/fp32-fused" --also "int8-fused=$V/int8-fused" --also "int8-static=$V/int8-static" \
    --also "fp32-full-last-layer=$V/fp32-full" --also "int8-full-last-layer=$V/int8-full" \
    --lengths short,t128 --max-length 128 --repeats 5 --json "$OUT/int8_variants.json"
# 5. cold start and peak RSS (the second, single-thread session of batch sharding included)
[ -f "$OUT/coldstart_sharded.json" ] || "$PY" benchmarks/bench_coldstart.py --fp32 "$B32" --int8 "$B8" \
    --checkpoint "$CKPT" --runs 7 "${THREADS_ARG[@]}" --out "$OUT/coldstart_sharded.json"
uptime
