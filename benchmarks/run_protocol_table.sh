#!/usr/bin/env bash
# Table 1 under both training protocols, on an equal CPU budget, one LoRA run shared per dataset x seed:
# the uehead-protocol run keeps its merged model, the authors-protocol run fits its heads on that model
# (finetune none), so the two differ only in how the uncertainty heads are trained.
#   bash benchmarks/run_protocol_table.sh            (resumable: finished runs are skipped)
# Settings through the environment: WORK, DATA, SEEDS, DEVICE, MAX_TRAIN, EPOCHS, MODEL, NAMES, LENGTHS, TAG.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WORK=${WORK:-runs/protocols}
MODEL=${MODEL:-minilm}
TAG=${TAG:-$MODEL}
NAMES=${NAMES:-sst2,cola,sst5,newsgroups20,toxigen,rotten_tomatoes}
COMMON=(--datasets "${DATA:-../shared/datasets}" --names "$NAMES" --model "$MODEL"
        --max-train "${MAX_TRAIN:-2000}" --epochs "${EPOCHS:-6}" --max-length "${LENGTHS:-newsgroups20=128}"
        --warmup-ratio 0.1 --device "${DEVICE:-auto}")
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for seed in ${SEEDS:-0 1 2}; do
  "$PY" benchmarks/reproduce_paper.py "${COMMON[@]}" --seeds "$seed" --work "$WORK/$TAG/uehead" --keep-models \
      --out "$WORK/$TAG/uehead_partial"
  "$PY" benchmarks/reproduce_paper.py "${COMMON[@]}" --seeds "$seed" --work "$WORK/$TAG/authors" --protocol authors \
      --lora-from "$WORK/$TAG/uehead" --out "$WORK/$TAG/authors_partial"
done
for protocol in uehead authors; do
  "$PY" benchmarks/reproduce_paper.py --aggregate-only --names "$NAMES" --work "$WORK/$TAG/$protocol" \
      --out "benchmarks/results/protocol_${protocol}_${TAG}"
done
