#!/usr/bin/env bash
# The README's test command. Two parts:
#  1. the whole suite in .venv with every extra (tiny random models; offline; CPU);
#  2. the torch-free proof: a fresh .venv-runtime with `pip install .[test,eval]` only (no torch),
#     checks that torch is absent and that `import uehead.runtime` leaves it out of sys.modules,
#     then runs the runtime tests there.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export UEHEAD_CACHE_DIR=${UEHEAD_CACHE_DIR:-$PWD/.cache/uehead-test}

echo "== [1/2] full suite (.venv, extras: dev)"
bash scripts/setup_env.sh .venv dev editable
.venv/bin/python -m pytest -q "$@"

echo "== [2/2] torch-free runtime (.venv-runtime, extras: test,eval; fresh)"
rm -rf .venv-runtime
bash scripts/setup_env.sh .venv-runtime test,eval regular
if .venv-runtime/bin/python -m pip show torch >/dev/null 2>&1; then
  echo "FAIL: torch was installed into the runtime-only environment" >&2; exit 1
fi
( cd /tmp && "$OLDPWD/.venv-runtime/bin/python" -c "
import sys, uehead.runtime, uehead.runtime.model, uehead.runtime.kernels
bad = sorted(m for m in ('torch', 'transformers', 'peft', 'optimum') if m in sys.modules)
assert not bad, f'runtime imported {bad}'
print('torch-free import: ok')" )
# Run the runtime tests against the installed (non-editable) package, from outside the source tree's
# import path so that `uehead` resolves to site-packages.
.venv-runtime/bin/python -m pytest -q -p no:cacheprovider --import-mode=importlib \
  tests/runtime tests/test_bundle.py tests/test_datasets.py tests/test_metrics.py tests/test_evaluate.py
