"""The Node.js client (examples/node/predict.mjs) against the Python runtime: the same labels, and
probabilities and scores within 1e-4, on each bundle's golden texts and a few hundred more (unicode,
empty, longer than max_length). Bundles: torch-free tiny ones (two settings) and, with the export
extra, tiny BERT fp32 / int8 and LLaMA fp32 exports.

Needs ``node`` and ``npm`` on PATH (skipped with the reason otherwise). examples/node is installed
with ``npm ci`` from its package-lock.json, the npm cache under .cache/npm; the install is reused
while package.json, package-lock.json and .npmrc stay the same.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tiny_bundle import GOLDEN_TEXTS, edit_json, edit_manifest, make_tiny_bundle
from tiny_models import WORDS
from uehead import runtime
from uehead.golden import read_golden

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "examples" / "node"
NPM_CACHE = ROOT / ".cache" / "npm"
TOLERANCE = 1e-4
MISSING = [tool for tool in ("node", "npm") if shutil.which(tool) is None]

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"{' and '.join(MISSING)} not on PATH: the Node.js client "
                                                      "test needs Node.js >= 18 and npm")

UNICODE = ["café", "naïve", "ΟΔΟΣ ΣΑΣ", "straße", "İstanbul", "日本語のタイトル", "한국어", "עברית", "العربية",
           "🙂", "👩‍👩‍👧", "e\u0301", "zero\u200bwidth", "no\u00a0break", "next\u0085line", "\ufeffbom",
           "tab\there", "crlf\r\nline", "nul\x00byte", "line\u2028sep", "ǅ", "ﬁne", "Ⅻ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "GOOD", "Bad!"]


def comparison_texts(golden) -> list[str]:
    """The golden texts, blanks, and a few hundred seeded texts: vocabulary words, unicode mixes,
    and texts far longer than max_length (up to 20,000 characters)."""
    rng = random.Random(0)
    texts = list(golden) + ["", " ", "\n", "\t \t"]
    texts += [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(120)]
    texts += [" ".join(rng.choices(WORDS + UNICODE, k=rng.randint(1, 15))) for _ in range(120)]
    texts += [" ".join(rng.choices(WORDS + UNICODE[:6], k=rng.randint(30, 400))) for _ in range(50)]
    texts += [" ".join(rng.choices(WORDS, k=n)) for n in (1500, 4000)]
    return texts


def lock_digest() -> str:
    return hashlib.sha256(b"".join((NODE_DIR / f).read_bytes()
                                   for f in ("package.json", "package-lock.json", ".npmrc"))).hexdigest()


@pytest.fixture(scope="session")
def predict_mjs() -> Path:
    """examples/node installed by `npm ci` (see the module docstring)."""
    stamp = NODE_DIR / "node_modules" / ".uehead-install"
    digest = lock_digest()
    if not (stamp.is_file() and stamp.read_text() == digest):
        # ONNXRUNTIME_NODE_INSTALL=skip repeats .npmrc's ignore-scripts for onnxruntime-node's CUDA download.
        proc = subprocess.run(["npm", "ci", "--cache", str(NPM_CACHE), "--prefer-offline", "--no-audit", "--no-fund"],
                              cwd=NODE_DIR, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"})
        assert proc.returncode == 0, f"npm ci failed in {NODE_DIR}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        stamp.write_text(digest)
    return NODE_DIR / "predict.mjs"


def run_node(predict_mjs, bundle, texts=None, *, stdin: str | None = None, args=()) -> subprocess.CompletedProcess:
    if stdin is None:
        stdin = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    return subprocess.run(["node", str(predict_mjs), str(bundle), *args], input=stdin, capture_output=True,
                          text=True, timeout=600)


def node_vs_python(predict_mjs, bundle, texts, *, node_batch: int = 1, python_batch: int = 1) -> dict[str, float]:
    """Max abs diff per output of the Node client vs ``runtime.load(bundle).predict``; asserts equal labels."""
    proc = run_node(predict_mjs, bundle, texts, args=("--batch-size", str(node_batch)))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    preds = runtime.load(bundle, threads=1).predict(texts, batch_size=python_batch)
    assert len(rows) == len(texts)
    assert [r["label"] for r in rows] == preds.labels
    assert [r["label_id"] for r in rows] == preds.label_ids.tolist()
    assert {r["uncertainty_kind"] for r in rows} == {preds.uncertainty_kind}
    assert set(rows[0]["scores"]) == set(preds.scores)
    got = {"probs": np.array([r["probs"] for r in rows]), "uncertainty": np.array([r["uncertainty"] for r in rows]),
           **{k: np.array([r["scores"][k] for r in rows]) for k in preds.scores}}
    want = {"probs": preds.probs, "uncertainty": preds.uncertainty, **preds.scores}
    return {k: float(np.max(np.abs(got[k] - want[k].astype(np.float64)))) for k in want}


def _tiny(tmp_path_factory, name):
    out = tmp_path_factory.mktemp("node") / name
    if name == "tiny":
        return make_tiny_bundle(out)
    # 3 classes, a short max_length cut on the left, the ALIEN head as the default score
    bundle = make_tiny_bundle(out, num_classes=3, max_length=8, default_kind="alien", seed=4)
    edit_manifest(bundle, lambda d: d["tokenizer"].update(truncation_side="left"), rechecksum=True)
    return bundle


def _exported(tmp_path_factory, name):
    pytest.importorskip("torch", reason="exported bundles need the export extra (torch)")
    from tiny_checkpoint import make_tiny_checkpoint
    from uehead.export import export_bundle

    arch, _, precision = name.partition("_")
    root = tmp_path_factory.mktemp("node")
    ckpt = make_tiny_checkpoint(root / "ckpt", arch=arch, seed=1)
    export_bundle(ckpt, root / name, int8=precision == "int8")
    return root / name


#: Extra real bundles to compare (e.g. the main job's), separated by os.pathsep:
#: ``UEHEAD_NODE_BUNDLES=artifacts/bundle-fp32:artifacts/bundle-int8 pytest tests/test_node_client.py``.
EXTRA_BUNDLES = [p for p in os.environ.get("UEHEAD_NODE_BUNDLES", "").split(os.pathsep) if p]


@pytest.fixture(scope="module", params=["tiny", "tiny_3class_left", "bert_fp32", "bert_int8", "llama_fp32",
                                        *EXTRA_BUNDLES])
def bundle(request, tmp_path_factory):
    if request.param in EXTRA_BUNDLES:
        return Path(request.param)
    make = _tiny if request.param.startswith("tiny") else _exported
    return make(tmp_path_factory, request.param)


def test_node_client_matches_the_python_runtime(predict_mjs, bundle, record_property):
    golden = read_golden(bundle / "golden.json")["texts"]
    texts = comparison_texts(golden)
    assert len(texts) > 300
    diffs = node_vs_python(predict_mjs, bundle, texts)
    record_property("max_abs_diff", diffs)
    print(f"{bundle.name}: {len(texts)} texts, max abs diff {diffs}")
    assert all(d <= TOLERANCE for d in diffs.values()), diffs


def test_node_client_batches_like_the_runtime(predict_mjs, tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b")
    diffs = node_vs_python(predict_mjs, bundle, comparison_texts(GOLDEN_TEXTS), node_batch=7, python_batch=32)
    assert all(d <= TOLERANCE for d in diffs.values()), diffs


@pytest.mark.parametrize("case, message", [
    ("tampered", r"head\.onnx: sha256 .* does not match the manifest"),
    ("missing", r"golden\.json: missing from the bundle"),
    ("newer", r"format_version 2; this client reads 1 to 1"),
    ("not_a_bundle", r"format is \"something-else\""),
    ("no_scores", r"no scores\.onnx .*re-export"),
])
def test_node_client_rejects_bad_bundles(predict_mjs, tmp_path, case, message):
    bundle = make_tiny_bundle(tmp_path / "b", with_scores=case != "no_scores")
    if case == "tampered":
        with open(bundle / "head.onnx", "ab") as f:
            f.write(b"\0")
    elif case == "missing":
        (bundle / "golden.json").unlink()
    elif case == "newer":
        edit_json(bundle / "manifest.json", lambda d: d.update(format_version=2))
    elif case == "not_a_bundle":
        edit_json(bundle / "manifest.json", lambda d: d.update(format="something-else"))
    proc = run_node(predict_mjs, bundle, ["a great film"])
    assert proc.returncode == 1 and proc.stdout == ""
    assert re.search(message, proc.stderr), proc.stderr


def test_node_client_input_errors_and_usage(predict_mjs, tiny_bundle_dir):
    proc = run_node(predict_mjs, tiny_bundle_dir, stdin='{"text": "good"}\n\n{oops\n')
    assert proc.returncode == 1 and "stdin line 3: not JSON" in proc.stderr
    assert len(proc.stdout.splitlines()) == 1  # the line before the bad one was written
    proc = run_node(predict_mjs, tiny_bundle_dir, stdin='{"txt": "good"}\n')
    assert proc.returncode == 1 and 'stdin line 1: needs a "text" string' in proc.stderr
    proc = subprocess.run(["node", str(predict_mjs)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: node predict.mjs BUNDLE" in proc.stderr
