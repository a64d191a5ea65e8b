"""The scaling sweep (uehead.bench.scaling, benchmarks/bench_scaling.py) on tiny bundles.

No timing assertions (speed is for the benchmarks to report): what the sweep feeds, what it
records and how its ratios and skips are derived.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uehead.runtime.model")

from tiny_bundle import edit_manifest, make_tiny_bundle
from uehead import runtime
from uehead.bench.flops import bert_flops
from uehead.bench.report import write_json
from uehead.bench import scaling
from uehead.bench.scaling import ExactLengthInputs, _cell_repeats, _feeds, scaling_sweep
from uehead.errors import IncompatibleBundleError

LENGTHS, BATCHES = (16, 32), (1, 2)
DIMS = {"layers": 1, "hidden": 16, "intermediate": 32}
PER_BUNDLE = ("repeats", "times_s", "median_batch_ms", "best_batch_ms", "us_per_text", "backbone_us_per_text",
              "head_kernels_us_per_text", "texts_per_s", "tokens_per_s", "backbone_gflop", "backbone_gflops_per_s")


CALLS: list[tuple[str, tuple[int, int], bool]] = []  # (bundle, shape, arena shrink asked), both spies


class SpySession:
    """Forwards to an ONNX Runtime session and keeps every feed it is given."""

    def __init__(self, session, name):
        self.session, self.name, self.feeds = session, name, []

    def get_inputs(self):
        return self.session.get_inputs()

    def run(self, names, feeds, run_options=None):
        self.feeds.append({k: v.copy() for k, v in feeds.items()})
        CALLS.append((self.name, feeds["input_ids"].shape, run_options is not None))
        return self.session.run(names, feeds, run_options)


def _calls(fn):
    CALLS.clear()
    out = fn()
    return out, list(CALLS)


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location(
        "bench_scaling", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scaling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two tiny bundles (different weights) loaded with spies on their backbones."""
    root = tmp_path_factory.mktemp("scaling")
    models = {}
    for name, seed in (("fp32", 0), ("int8", 1)):
        m = runtime.load(make_tiny_bundle(root / name, seed=seed), threads=1)
        m.backbone_session = SpySession(m.backbone_session, name)
        models[name] = m
    return models


@pytest.fixture(scope="module")
def swept(pair):
    return _calls(lambda: scaling_sweep(pair, lengths=LENGTHS, batch_sizes=BATCHES, repeats=1, threads=1, dims=DIMS,
                                        settle_s=0.0))


@pytest.fixture(scope="module")
def doc(swept):
    return swept[0]


def test_rows_hold_exactly_length_tokens_of_the_sentences_between_cls_and_sep(tiny_bundle_dir):
    from tokenizers import Tokenizer

    sentences = ["a great film", "bad and boring", "the plot was not quite good", "", "story"]
    tok = Tokenizer.from_file(str(tiny_bundle_dir / "tokenizer.json"))
    vocab = tok.get_vocab()
    inputs = ExactLengthInputs(tiny_bundle_dir / "tokenizer.json", sentences)
    ids = inputs.ids(9, 3)
    assert ids.shape == (3, 9) and ids.dtype == np.int64
    assert (ids[:, 0] == vocab["[CLS]"]).all() and (ids[:, -1] == vocab["[SEP]"]).all()
    assert not (ids == vocab["[PAD]"]).any()
    stream = [tok.encode(s, add_special_tokens=False).ids for s in sentences if s]
    assert ids[0, 1:-1].tolist() == (stream[0] + stream[1] + stream[2])[:7]  # 3 + 3 + 6 tokens, cut at 7
    assert ids[1, 1:-1].tolist() == (stream[3] + stream[0] + stream[1])[:7]  # next row: next sentence, wrapping
    assert inputs.ids(9, 1).tolist() == ids[:1].tolist()  # batch 1 is row 0 of every batch
    with pytest.raises(ValueError, match="special tokens"):
        inputs.ids(2, 1)


def test_the_backbones_are_fed_exactly_the_grid_shapes_with_full_masks(swept, pair):
    doc, calls = swept
    assert [(c["length"], c["batch_size"]) for c in doc["cells"]] == [(L, B) for L in LENGTHS for B in BATCHES]
    for c in doc["cells"]:
        assert c["shape"] == [c["batch_size"], c["length"]]
        assert c["inputs_identical"] is True
        assert c["memory"]["order"] == "alternated"
    # per cell: both warm up, the timed calls alternate, then each releases its arena (a tiny run)
    expected = []
    for L in LENGTHS:
        for B in BATCHES:
            expected += [("fp32", (B, L), False), ("int8", (B, L), False), ("fp32", (B, L), False),
                         ("int8", (B, L), False), ("fp32", (1, 3), True), ("int8", (1, 3), True)]
    assert calls == expected
    for m in pair.values():
        for f in m.backbone_session.feeds:
            assert set(f) == {"input_ids", "attention_mask", "token_type_ids"}
            assert (f["attention_mask"] == 1).all() and (f["token_type_ids"] == 0).all()
    fed = [f["input_ids"] for f in pair["fp32"].backbone_session.feeds]
    assert all(np.array_equal(a, b) for a, b in zip(fed, (f["input_ids"] for f in pair["int8"].backbone_session.feeds)))


def test_every_cell_records_positive_figures_and_survives_json(doc, tmp_path):
    path = write_json(tmp_path / "scaling.json", doc)
    back = json.loads(path.read_text())
    assert back["benchmark"] == "scaling"
    for key in ("cpu", "threads", "loadavg_start", "loadavg_end", "onnxruntime"):
        assert key in back["meta"]
    assert back["meta"]["threads"] == 1
    for c in back["cells"]:
        assert c["repeats"] == 1
        for name in ("fp32", "int8"):
            r = c["results"][name]
            missing = [k for k in PER_BUNDLE if k not in r]
            assert not missing, missing
            assert len(r["times_s"]) == r["repeats"] == 1
            for k in PER_BUNDLE:
                if k != "times_s":
                    assert isinstance(r[k], (int, float)) and math.isfinite(r[k]) and r[k] > 0, (k, r[k])
            B, L = c["batch_size"], c["length"]
            assert r["us_per_text"] == pytest.approx(1e3 * r["median_batch_ms"] / B)
            assert r["tokens_per_s"] == pytest.approx(B * L / (r["median_batch_ms"] / 1e3))
            assert r["backbone_gflop"] == pytest.approx(bert_flops(DIMS, [(B, L)]) / 1e9)
            backbone_s = r["backbone_us_per_text"] * B / 1e6
            assert r["backbone_gflops_per_s"] == pytest.approx(r["backbone_gflop"] / backbone_s)
    assert back["bundles"]["fp32"]["dims_source"] == "given"


def test_the_int8_over_fp32_ratio_is_taken_from_the_recorded_medians(doc, cli):
    for c in doc["cells"]:
        med = {n: float(np.median(c["results"][n]["times_s"])) for n in ("fp32", "int8")}
        assert set(c["ratios"]) == {"int8_over_fp32"}
        assert c["ratios"]["int8_over_fp32"] == pytest.approx(med["int8"] / med["fp32"])
        assert c["ratios"]["int8_over_fp32"] == pytest.approx(c["results"]["int8"]["median_batch_ms"]
                                                              / c["results"]["fp32"]["median_batch_ms"])
    table = cli.scaling_table(doc)
    assert "int8/fp32" in table and "microseconds per text" in table
    first = doc["cells"][0]
    assert f"{first['ratios']['int8_over_fp32']:.3g}"[:4] in table


def test_big_cells_get_fewer_repeats_never_below_the_minimum(pair):
    assert _cell_repeats(5, 16, 64) == 4
    assert _cell_repeats(5, 64, 64) == 3
    assert _cell_repeats(2, 64, 64) == 2
    assert _cell_repeats(5, 10**6, None) == 5
    d = scaling_sweep(pair, lengths=(16, 32), batch_sizes=(1, 2), repeats=5, threads=1, max_tokens_per_cell=64,
                      settle_s=0.0)
    assert [c["repeats"] for c in d["cells"]] == [4, 3, 3, 3]
    for c in d["cells"]:
        assert all(len(r["times_s"]) == c["repeats"] for r in c["results"].values())


def test_lengths_past_the_position_embeddings_are_skipped_with_the_reason(tmp_path, cli):
    bundle = make_tiny_bundle(tmp_path / "short")
    edit_manifest(bundle, lambda m: m["backbone"].update(max_positions=16), rechecksum=True)
    d = scaling_sweep([bundle], lengths=(16, 32), batch_sizes=(1,), repeats=1, threads=1, settle_s=0.0)
    assert [c["length"] for c in d["cells"]] == [16]
    assert len(d["skipped"]) == 1 and d["skipped"][0]["length"] == 32
    assert "16 positions" in d["skipped"][0]["reason"]
    assert d["bundles"]["fp32"]["max_positions"] == 16
    assert d["cells"][0]["ratios"] == {}
    assert "length 32 skipped" in cli.scaling_table(d)


def test_a_backbone_input_the_sweep_cannot_fill_is_refused_by_name():
    class Input:
        def __init__(self, name):
            self.name = name

    class Session:
        def get_inputs(self):
            return [Input("input_ids"), Input("pixel_values")]

    with pytest.raises(IncompatibleBundleError, match="pixel_values"):
        _feeds(Session(), np.zeros((1, 4), np.int64), "backbone.onnx")


def _fake_proc(monkeypatch, available_mb):
    values = {"MemAvailable": available_mb * 1024, "VmRSS": 1000, "VmHWM": 1000}
    monkeypatch.setattr(scaling, "_proc_kb", lambda file, key: values[key])


def _measured(batch, length, peak_mb, order="alternated"):
    return {"batch_size": batch, "length": length, "memory": {"peak_rss_mb": peak_mb, "order": order}}


def test_a_cell_that_would_not_fit_in_memory_runs_one_bundle_at_a_time_or_is_skipped(monkeypatch):
    cells = [_measured(8, 64, 100.0), _measured(32, 128, 800.0), _measured(1, 512, 10.0)]
    _fake_proc(monkeypatch, 10_000)
    # need scales from the biggest measured cell (32 x 128^2): 400 MB per bundle x 4 x 4
    plan = scaling._memory_plan(cells, 128, 256, 2, 0.8)
    assert plan["needed_mb_estimate"] == pytest.approx(2 * 400 * 16)
    assert plan["order"].startswith("one bundle at a time")
    assert scaling._memory_plan(cells, 32, 256, 2, 0.8)["order"] == "alternated"  # 3200 MB < 8000
    skip = scaling._memory_plan(cells, 128, 512, 2, 0.8)  # 25600 MB per bundle
    assert skip["order"] == "skipped" and "per bundle" in skip["reason"] and "10000 MB available" in skip["reason"]
    assert scaling._memory_plan([], 128, 512, 2, 0.8)["order"] == "alternated"  # nothing measured yet: no estimate


def test_one_bundle_at_a_time_keeps_the_medians_and_records_the_order(pair, monkeypatch):
    real = scaling._memory_plan

    def blocked(cells, batch, length, n, share):
        plan = real(cells, batch, length, n, share)
        plan["order"] = "one bundle at a time (test)"
        return plan

    monkeypatch.setattr(scaling, "_memory_plan", blocked)
    d, calls = _calls(lambda: scaling_sweep(pair, lengths=(16,), batch_sizes=(2,), repeats=2, threads=1,
                                            settle_s=0.0))
    assert calls == [("fp32", (2, 16), False)] * 3 + [("fp32", (1, 3), True)] + [("int8", (2, 16), False)] * 3 \
        + [("int8", (1, 3), True)]
    assert d["cells"][0]["memory"]["order"] == "one bundle at a time (test)"
    assert all(len(r["times_s"]) == 2 for r in d["cells"][0]["results"].values())


def test_the_cli_writes_json_and_plot(tmp_path, pair, cli):
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    args = ["--fp32", str(pair["fp32"].path), "--int8", str(pair["int8"].path), "--lengths", "16,600",
            "--batch-sizes", "1,2", "--repeats", "1", "--threads", "1", "--out", str(out), "--plot", str(png)]
    assert cli.main(args) == 0
    d = json.loads(out.read_text())
    assert [(c["length"], c["batch_size"]) for c in d["cells"]] == [(16, 1), (16, 2), (600, 1), (600, 2)]
    assert d["command"].startswith("python benchmarks/bench_scaling.py --fp32")
    if importlib.util.find_spec("matplotlib") is not None:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
