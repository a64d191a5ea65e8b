"""``uehead bench`` on the tiny bundle: the functions run and write sane, complete JSON.

No timing assertions: speed targets are checked by the benchmarks themselves (benchmarks/),
never by timed unit tests. Everything here is offline and takes seconds.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

pytest.importorskip("uehead.runtime.model")

from uehead import bench
from uehead.bench.proc import peak_gflops
from uehead.bench.run import merge_peak

STAGE_KEYS = {"bundle", "length", "batch_size", "seq_len_mean", "tokenize_us", "backbone_us", "head_us",
              "kernels_us", "head_plus_kernels_us", "overhead_pct"}
E2E_KEYS = {"length", "batch_size", "engine", "n_texts", "total_s", "ms_per_batch", "best_ms_per_batch", "texts_per_s",
            "spread_pct"}
COLD_KEYS = {"import_s", "load_s", "first_predict_s", "total_s", "since_spawn_s", "peak_rss_mb",
             "peak_rss_after_batch32_mb"}


@pytest.fixture(scope="module")
def bundle(tiny_bundle_dir):
    return tiny_bundle_dir


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


def _finite_nonneg(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


def test_bench_texts_same_count_per_length_and_longer_when_joined(model):
    count = lambda ts: [len(x) for x in model.tokenizer.encode(ts)]
    texts = bench.bench_texts(count, n=10, max_length=model.tokenizer.max_length)
    assert set(texts) == set(bench.LENGTHS)
    for v in texts.values():
        assert len(v["texts"]) == 10 and all(isinstance(t, str) and t for t in v["texts"])
    assert texts["t64"]["mean_tokens"] >= texts["short"]["mean_tokens"]
    assert max(count(texts["t128"]["texts"])) <= model.tokenizer.max_length
    assert bench.bench_texts(count, n=10, max_length=16)["t64"]["texts"] == texts["t64"]["texts"]  # deterministic


def test_head_overhead_is_complete_and_torch_free(model):
    out = bench.head_overhead(model, ["a great film", "bad", "the plot"] * 30, batch_size=32, repeats=3,
                              one_batch_repeats=2)
    assert out["batch_size"] == 32 and out["repeats"] == 3 and out["one_batch"]["repeats"] == 2
    assert out["n_texts"] == 90 and out["n_batches"] == 3 and out["head_calls"] == 1
    keys = ("tokenize_us", "backbone_us", "head_us", "kernels_us", "head_plus_kernels_us", "overhead_pct_of_backbone")
    for k in keys + ("hot_head_us", "hot_kernels_us"):
        assert _finite_nonneg(out[k]), (k, out[k])
    for k in keys:
        assert _finite_nonneg(out["one_batch"][k]), (k, out["one_batch"][k])
    assert out["overhead_pct_of_backbone"] == pytest.approx(
        100 * out["head_plus_kernels_us"] / out["backbone_us"], rel=1e-9)
    with pytest.raises(ValueError):
        bench.head_overhead(model, [], batch_size=32)


def test_stage_times_cover_every_text_in_predict_batches(model):
    texts = [f"film {'good ' * i}" for i in range(10)]
    st = bench.stage_times(model, texts, batch_size=4, repeats=2)
    assert st["n_batches"] == 3 and sum(b for b, _ in st["shapes"]) == 10
    assert [s for _, s in st["shapes"]] == sorted(s for _, s in st["shapes"])  # length-sorted like predict
    assert st["head_calls"] == 1  # 10 rows: one head block


def test_bert_flops_matches_hand_count():
    dims = {"layers": 2, "hidden": 4, "intermediate": 8}
    # per token per layer 4*16 + 2*32 = 128 MACs; per sequence per layer 2*s^2*h; pooler h^2
    b, s = 3, 5
    macs = b * (2 * (s * 128 + 2 * s * s * 4) + 16)
    assert bench.bert_flops(dims, [(b, s)]) == 2 * macs
    assert bench.bert_flops(dims, [(b, s), (b, s)]) == 4 * macs


def test_backbone_dims_from_checkpoint_config(tmp_path, bundle):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(
        {"num_hidden_layers": 6, "hidden_size": 384, "intermediate_size": 1536}))
    dims = bench.backbone_dims(bundle, tmp_path)
    assert (dims["layers"], dims["hidden"], dims["intermediate"]) == (6, 384, 1536)
    assert bench.backbone_dims(bundle) is None  # the tiny backbone has no feed-forward block


def test_peak_gflops_small_matmul():
    out = peak_gflops(threads=1, n=64, reps=2)
    assert _finite_nonneg(out["numpy"]["gflops_best"]) and out["peak_gflops"] > 0


def test_run_bench_writes_complete_json(tmp_path, bundle):
    out_file = tmp_path / "bench.json"
    doc = bench.run_bench([bundle], out_file, repeats=1, batch_sizes=(1, 4), min_texts=4, threads=1,
                          parts=("stages", "e2e", "coldstart"), coldstart_runs=1, quiet=True)
    on_disk = json.loads(out_file.read_text())
    assert on_disk["settings"] == json.loads(json.dumps(doc["settings"]))
    assert {"meta", "settings", "texts", "stages", "overhead", "e2e", "agreement", "coldstart",
            "summary"} <= set(on_disk)
    assert on_disk["meta"]["threads"] == 1 and on_disk["meta"]["loadavg_end"] is not None

    stages = on_disk["stages"]
    assert len(stages) == len(bench.LENGTHS) * 2
    for row in stages:
        assert STAGE_KEYS <= set(row), STAGE_KEYS - set(row)
        assert all(_finite_nonneg(row[k]) for k in STAGE_KEYS - {"bundle", "length"})
    e2e = on_disk["e2e"]
    assert len(e2e) == len(bench.LENGTHS) * 2 and {r["engine"] for r in e2e} == {"uehead-fp32"}
    for row in e2e:
        assert E2E_KEYS <= set(row) and row["n_texts"] == 4 and row["texts_per_s"] > 0
    assert on_disk["agreement"]["uehead-fp32"]["label_agreement"] == 1.0

    cold = on_disk["coldstart"]["uehead-fp32"]["median"]
    assert COLD_KEYS <= set(cold) and all(_finite_nonneg(cold[k]) for k in COLD_KEYS)
    assert cold["torch_imported"] is False
    assert cold["since_spawn_s"] >= cold["total_s"]
    names = [c["name"] for c in on_disk["summary"]["checks"]]
    assert any("cold start" in n for n in names) and any("% of backbone" in n for n in names)
    assert all(isinstance(c["met"], bool) for c in on_disk["summary"]["checks"])


def test_report_prints_tables(capsys, bundle):
    doc = bench.run_bench(bundle, None, repeats=1, batch_sizes=(2,), lengths=("short",), min_texts=2, threads=1,
                          parts=("stages", "e2e"))
    text = capsys.readouterr().out
    assert "per batch, per stage" in text and "end to end" in text and "per-batch CPU overhead" in text
    assert doc["summary"]["checks"]


def test_cli_bench_writes_json(tmp_path, bundle, monkeypatch):
    from uehead import cli

    real = bench.run_bench
    seen = {}

    def small(b, json_out=None, checkpoint=None, repeats=7):
        seen.update(bundle=b, checkpoint=checkpoint, repeats=repeats)
        return real(b, json_out, checkpoint=checkpoint, repeats=repeats, batch_sizes=(2,), lengths=("short",),
                    min_texts=2, threads=1, parts=("stages", "e2e"), quiet=True)

    monkeypatch.setattr(bench, "run_bench", small)
    out_file = tmp_path / "cli.json"
    assert cli.main(["bench", str(bundle), "--json", str(out_file), "--repeats", "2"]) == 0
    assert seen == {"bundle": bundle, "checkpoint": None, "repeats": 2}
    assert json.loads(out_file.read_text())["settings"]["repeats"] == 2


TORCH_FREE = ("uehead.bench", "uehead.bench.engines", "uehead.bench.texts", "uehead.bench.timing",
              "uehead.bench.flops", "uehead.bench.machine", "uehead.bench.proc", "uehead.bench.overhead",
              "uehead.bench.report", "uehead.bench.run")
BLOCK_TORCH = ("import sys, importlib.abc\n"
               "class Block(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('torch', 'transformers', 'optimum'):\n"
               "            raise ImportError('blocked')\n"
               "sys.meta_path.insert(0, Block())\n")


#: uehead.bench's modules in the order its docstring lists them: each may import only earlier ones.
LAYERS = ("engines", "texts", "timing", "flops", "machine", "proc", "overhead", "report", "peers", "run")


def test_bench_modules_import_only_earlier_ones():
    """No import cycles: every uehead.bench import (module level or in a function) points back up the list."""
    import ast
    from pathlib import Path

    import uehead.bench

    folder = Path(uehead.bench.__file__).parent
    assert {p.stem for p in folder.glob("*.py")} == {"__init__", *LAYERS}
    for i, name in enumerate(LAYERS):
        tree = ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))
        used = {n.module.rsplit(".", 1)[-1] for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("uehead.bench.")}
        assert used <= set(LAYERS[:i]), (name, used - set(LAYERS[:i]))


@pytest.mark.parametrize("module", TORCH_FREE)
def test_each_bench_module_imports_alone_without_torch(module):
    """A fresh interpreter per module: an import cycle or a torch import shows up here."""
    code = BLOCK_TORCH + (f"import {module}\n"
                          "print(sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_peers_without_the_export_extra_name_the_install_command():
    code = BLOCK_TORCH + ("try:\n    import uehead.bench.peers\n"
                          "except ImportError as e:\n    print('MSG:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "pip install 'uehead[export]'" in out.stdout, out.stdout


def test_run_bench_without_the_export_extra_skips_the_peers(tmp_path, bundle):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(
        {"num_hidden_layers": 1, "hidden_size": 8, "intermediate_size": 16}))
    code = BLOCK_TORCH + (
        "import json\nfrom uehead.bench import run_bench\n"
        f"doc = run_bench({str(bundle)!r}, None, checkpoint={str(tmp_path)!r}, repeats=1, batch_sizes=(2,), "
        "lengths=('short',), min_texts=2, threads=1, parts=('e2e',), peers=('pytorch-fp32',), quiet=True)\n"
        "print(json.dumps({'peers': doc['peers'], 'engines': sorted({r['engine'] for r in doc['e2e']})}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["engines"] == ["uehead-fp32"] and list(got["peers"]) == ["pytorch-fp32"]
    assert "pip install 'uehead[export]'" in got["peers"]["pytorch-fp32"]["skipped"]


def test_overhead_batch_job_is_one_runtime_block():
    from uehead.runtime.model import BLOCK_ROWS

    assert bench.OVERHEAD_TEXTS == BLOCK_ROWS


def test_fixed_width_table_formats_cells():
    text = bench.fixed_width_table([{"a": 0.12345, "b": None}, {"a": 1234.5, "b": "x"}], ["a", "b"], "title")
    assert text.splitlines() == ["title", "     a  b", "------  -", " 0.123  -", "1234.5  x"]


def test_peers_on_tiny_checkpoint(tmp_path, bundle):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_checkpoint import make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path / "ckpt")
    doc = bench.run_bench([bundle], None, checkpoint=ckpt, repeats=1, batch_sizes=(2,), lengths=("short",),
                          min_texts=2, threads=1, parts=("e2e",), peers=("pytorch-fp32", "pytorch-int8"),
                          quiet=True)
    engines = {r["engine"] for r in doc["e2e"]}
    assert engines == {"uehead-fp32", "pytorch-fp32", "pytorch-int8"}
    torch_row = next(r for r in doc["e2e"] if r["engine"] == "pytorch-fp32")
    assert torch_row["x_vs_pytorch-fp32"] == 1.0 and torch_row["forward_ms_per_batch"] > 0
    assert set(doc["agreement"]) == engines


def test_head_overhead_report_prints_and_is_json(bundle, capsys):
    out = bench.head_overhead_report(bundle, repeats=2, threads=1)
    assert "per-batch CPU overhead of the head" in capsys.readouterr().out
    assert set(out["lengths"]) == {"short", "t128"}
    assert json.loads(json.dumps(out))["lengths"]["short"]["batch_size"] == 32


@pytest.mark.parametrize("kwargs", [{"lengths": ("huge",)}, {"parts": ("nope",)}, {"batch_sizes": (0,)},
                                    {"repeats": 0}])
def test_run_bench_rejects_bad_arguments(bundle, kwargs):
    with pytest.raises(ValueError):
        bench.run_bench(bundle, None, quiet=True, **kwargs)


def test_merge_peak_keeps_the_best_and_rescales():
    doc = {"peak": {"peak_gflops": 50.0, "n": 8}, "stages": [{"backbone_gflops": 25.0, "pct_of_peak": 50.0}],
           "e2e": [{"engine": "x"}]}
    merge_peak(doc, {"peak_gflops": 100.0, "n": 8})
    assert doc["peak"]["peak_gflops"] == 100.0 and len(doc["peak"]["runs"]) == 2
    assert doc["stages"][0]["pct_of_peak"] == 25.0 and "pct_of_peak" not in doc["e2e"][0]
    merge_peak(doc, {"peak_gflops": 10.0, "n": 8})
    assert doc["peak"]["peak_gflops"] == 100.0 and len(doc["peak"]["runs"]) == 3
