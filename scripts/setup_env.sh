#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install uehead with the given extras, pinned by
# constraints.txt. Idempotent: a stamp keyed by pyproject.toml + constraints.txt + extras skips
# the install when nothing changed.
#   usage: scripts/setup_env.sh VENV_DIR EXTRAS [editable|regular]
set -euo pipefail
venv=${1:?venv dir}; extras=${2:-}; mode=${3:-editable}
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-}
if [[ -z $py ]]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1; then py=$cand; break; fi
  done
fi
if [[ ! -x $venv/bin/python ]]; then
  echo "[setup] creating $venv with $($py --version 2>&1)"
  "$py" -m venv "$venv"
fi
stamp_key=$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -c1-16)-$extras-$mode
if [[ -f $venv/.uehead-stamp && $(cat "$venv/.uehead-stamp") == "$stamp_key" ]]; then
  echo "[setup] $venv is up to date ($extras)"; exit 0
fi
"$venv/bin/python" -m pip install -q --upgrade pip "setuptools>=68" wheel
target="$root"; [[ -n $extras ]] && target="$root[$extras]"
if [[ $mode == editable ]]; then
  echo "[setup] pip install -e '.[$extras]' (pinned by constraints.txt)"
  "$venv/bin/python" -m pip install -q -c "$root/constraints.txt" -e "$target"
else
  echo "[setup] pip install '.[$extras]' (pinned by constraints.txt)"
  "$venv/bin/python" -m pip install -q -c "$root/constraints.txt" "$target"
fi
echo "$stamp_key" > "$venv/.uehead-stamp"
