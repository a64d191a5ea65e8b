"""The runtime works with torch & co. made unimportable, and never imports them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = ("torch", "transformers", "peft", "optimum")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the runtime must not import it")
            return None

    sys.meta_path.insert(0, Block())
""")


def run_blocked(code: str) -> dict:
    script = BLOCKER + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_load_predict_verify_with_torch_blocked(tiny_bundle_dir):
    out = run_blocked(f"""
        try:
            import torch  # the blocker must really bite
            raise SystemExit("torch imported despite the blocker")
        except ImportError:
            pass
        import json
        from uehead import runtime
        model = runtime.load({str(tiny_bundle_dir)!r})
        preds = model.predict(["a great film", "", "bad"], distances=True)
        chunks = list(model.iter_predict(iter(["good", "bad", "dull"]), chunk_size=2))
        report = runtime.verify({str(tiny_bundle_dir)!r})
        heavy = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        print(json.dumps({{"n": len(preds), "scores": sorted(preds.scores), "chunks": [len(c) for c in chunks],
                          "ok": report["ok"], "heavy": heavy, "torch": "torch" in sys.modules}}))
    """)
    assert out == {"n": 3, "scores": ["adue", "alien", "entropy", "md", "rmd", "sr"], "chunks": [2, 1],
                   "ok": True, "heavy": [], "torch": False}


def test_importing_the_runtime_is_lazy():
    out = run_blocked("""
        import json
        import uehead, uehead.runtime, uehead.scores, uehead.bundle
        heavy = [m for m in ("onnxruntime", "numba", "tokenizers", "torch") if m in sys.modules]
        print(json.dumps({"heavy": heavy}))
    """)
    assert out == {"heavy": []}
