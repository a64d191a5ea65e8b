#!/usr/bin/env bash
# The README's test command. Two parts:
#  1. the whole suite in .venv with every extra (tiny random models; offline; CPU);
#  2. the torch-free proof: a fresh .venv-runtime with `pip install .[test,eval,parquet,serve]` only (no torch),
#     checks that torch is absent and that `import uehead.runtime` leaves it out of sys.modules,
#     then runs the runtime tests there.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export UEHEAD_CACHE_DIR=${UEHEAD_CACHE_DIR:-$PWD/.cache/uehead-test}

echo "== [1/2] full suite (.venv, extras: dev)"
bash scripts/setup_env.sh .venv dev editable
.venv/bin/python -m pytest -q "$@"

echo "== [2/2] torch-free runtime (.venv-runtime, extras: test,eval,parquet,serve; fresh)"
rm -rf .venv-runtime
bash scripts/setup_env.sh .venv-runtime test,eval,parquet,serve regular
if .venv-runtime/bin/python -m pip show torch >/dev/null 2>&1; then
  echo "FAIL: torch was installed into the runtime-only environment" >&2; exit 1
fi
( cd /tmp && "$OLDPWD/.venv-runtime/bin/python" -c "
import sys, uehead.runtime, uehead.runtime.model, uehead.runtime.kernels
bad = sorted(m for m in ('torch', 'transformers', 'peft', 'optimum') if m in sys.modules)
assert not bad, f'runtime imported {bad}'
print('torch-free import: ok')" )
# Run the runtime tests against the installed (non-editable) package. The `pytest` entry point (not
# `python -m pytest`, which puts the source tree first on sys.path) makes `uehead` resolve to site-packages.
# PYTHONSAFEPATH=1 keeps the tests' own `python -c` / `python -m` subprocesses from doing the same.
PYTHONSAFEPATH=1 .venv-runtime/bin/pytest -q -p no:cacheprovider --import-mode=importlib \
  tests/runtime tests/calibration tests/serve tests/test_bundle.py tests/test_checkpoint.py tests/test_datasets.py \
  tests/test_metrics.py tests/test_evaluate.py tests/test_scores.py tests/test_compat.py tests/test_bench.py \
  tests/test_paired.py tests/test_data_files.py
