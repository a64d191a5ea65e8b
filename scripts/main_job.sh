#!/usr/bin/env bash
# The README's main job: set up .venv (pinned), then train -> export -> verify -> evaluate -> overhead.
#   bash scripts/main_job.sh [--max-train N] [--epochs E] [--out DIR] [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
bash scripts/setup_env.sh .venv dev editable
exec .venv/bin/python scripts/main_job.py "$@"
