"""Does a post-hoc bundle serve its source classifier's probabilities? (`--finetune none`)

    python benchmarks/check_posthoc.py --model FOLDER --bundle BUNDLE [--data rotten_tomatoes] [--rows 200]

Runs the original Hugging Face ``AutoModelForSequenceClassification`` folder in PyTorch and the
bundle (written by ``uehead train --model FOLDER --finetune none`` + ``uehead export``) with the
torch-free runtime in a child process, on the first ``--rows`` test texts of ``--data``, and prints
the max absolute difference of the class probabilities, the number of changed labels, and writes
both to ``--json`` when given.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

_CHILD = """
import json, sys
import numpy as np
from uehead.runtime import load
texts = json.load(open(sys.argv[2]))
probs = load(sys.argv[1]).predict(texts).probs
assert "torch" not in sys.modules, "the runtime imported torch"
np.save(sys.argv[3], probs)
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="the fine-tuned Hugging Face classifier folder")
    p.add_argument("--bundle", type=Path, required=True, help="the bundle exported from the post-hoc checkpoint")
    p.add_argument("--data", default="rotten_tomatoes", help="dataset whose test texts are scored (default rotten_tomatoes)")
    p.add_argument("--rows", type=int, default=200, help="test texts to compare (default 200)")
    p.add_argument("--json", type=Path, default=None, help="write the result here (default: print only)")
    a = p.parse_args(argv)

    import tempfile

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from uehead.bundle import read_manifest
    from uehead.datasets import load_dataset

    texts = list(load_dataset(a.data, splits=("test",))["test"].texts[: a.rows])
    max_length = read_manifest(a.bundle).tokenizer.max_length
    model = AutoModelForSequenceClassification.from_pretrained(a.model, local_files_only=True).float().eval()
    tok = AutoTokenizer.from_pretrained(a.model, local_files_only=True)
    with torch.no_grad():
        enc = tok(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        ref = torch.softmax(model(**enc).logits.float(), dim=-1).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "texts.json").write_text(json.dumps(texts))
        subprocess.run([sys.executable, "-c", _CHILD, str(a.bundle), str(Path(tmp) / "texts.json"),
                        str(Path(tmp) / "probs.npy")], check=True)
        got = np.load(Path(tmp) / "probs.npy")
    result = {"model": str(a.model), "bundle": str(a.bundle), "data": a.data, "rows": len(texts),
              "max_abs_diff_probs": float(np.abs(got - ref).max()),
              "labels_changed": int((got.argmax(1) != ref.argmax(1)).sum())}
    print(f"check_posthoc: {result['rows']} {a.data} test texts: max |p_runtime - p_pytorch| = "
          f"{result['max_abs_diff_probs']:.2e}, labels changed {result['labels_changed']}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["max_abs_diff_probs"] <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
