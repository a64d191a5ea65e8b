"""Packaging: the torch-free default, extras guards that name the pip command, and a wheel that
installs only `uehead/...` (the stage folders are mapped with setuptools package-dir)."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCK = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError(f'No module named {{name!r}} (blocked by test)')
        return None
sys.meta_path.insert(0, Block())
"""


def run_py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)


@pytest.mark.parametrize("sub, extra, blocked", [
    ("uehead.training", "train", {"torch"}),
    ("uehead.training", "train", {"peft"}),
    ("uehead.export", "export", {"onnx"}),
])
def test_heavy_subpackage_without_its_extra_names_the_install_command(sub, extra, blocked):
    out = run_py(BLOCK.format(blocked=blocked) + f"""
try:
    import {sub}
except ImportError as e:
    print('MSG:', e)
else:
    print('imported')
""")
    assert out.returncode == 0, out.stderr
    assert f"pip install 'uehead[{extra}]'" in out.stdout, out.stdout


def test_import_uehead_is_light():
    out = run_py("import sys, uehead, uehead.bundle, uehead.datasets; "
                 "print(sorted(m for m in ('torch','numba','onnxruntime','transformers') if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_wheel_holds_only_the_uehead_package(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("uehead-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("uehead-")}
    assert top == {"uehead"}, top
    for must in ("uehead/runtime/model.py", "uehead/runtime/kernels.py", "uehead/training/__init__.py",
                 "uehead/export/__init__.py", "uehead/bundle.py", "uehead/cli.py"):
        assert must in names, must
    meta = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    base = [ln for ln in text.splitlines() if ln.startswith("Requires-Dist:") and "extra ==" not in ln]
    assert not any("torch" in ln for ln in base), base
