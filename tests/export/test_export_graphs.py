"""backbone.onnx / head.onnx: dynamic batch and sequence axes, both architectures, z as METHOD.md defines it."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from uehead.export import graphs
from uehead.checkpoint import read_checkpoint
from uehead.export.hf import load_model, load_tokenizer
from uehead.export.tokenization import tokenizer_spec, write_tokenizer
from uehead.export.validate import OnnxPipeline, TorchReference, validation_cases

ARCHS = ("bert", "llama")


@pytest.fixture(scope="module")
def exported(tiny_ckpts, tmp_path_factory):
    """arch -> (checkpoint, model, runtime tokenizer, input names, OnnxPipeline, folder) of graphs
    exported directly."""
    out = {}
    for arch in ARCHS:
        ckpt = read_checkpoint(tiny_ckpts[arch])
        model, hf_tok = load_model(ckpt), load_tokenizer(ckpt)
        names = graphs.backbone_input_names(model, hf_tok, arch)
        d = tmp_path_factory.mktemp(f"graphs_{arch}")
        spec = tokenizer_spec(max_length=ckpt.max_length, pad_token_id=hf_tok.pad_token_id, input_names=names)
        tok = write_tokenizer(hf_tok, d / "tokenizer.json", spec)
        graphs.export_backbone(model, arch, names, d / "backbone.onnx")
        heads = {k: graphs.head_module(h) for k, h in ckpt.heads.items()}
        graphs.export_head(graphs.task_classifier(model, arch), heads, model.config.hidden_size, d / "head.onnx")
        out[arch] = (ckpt, model, tok, names, OnnxPipeline(d / "backbone.onnx", d / "head.onnx"), d)
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_input_names_follow_the_tokenizer(exported, arch):
    _, _, _, names, pipe, _ = exported[arch]
    expected = ("input_ids", "attention_mask", "token_type_ids") if arch == "bert" else ("input_ids", "attention_mask")
    assert names == expected
    assert pipe.input_names == expected
    assert pipe.output_names == ("task_logits", "adue_logits", "alien_logits")


@pytest.mark.parametrize("arch", ARCHS)
def test_axes_are_symbolic(exported, arch):
    d = exported[arch][5]
    model = onnx.load(str(d / "backbone.onnx"))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert [x.dim_param for x in dims] == ["batch", "sequence"], inp.name
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    assert out_dims[0].dim_param == "batch" and out_dims[1].dim_value == 32
    head = onnx.load(str(d / "head.onnx"))
    assert head.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_1_and_37_lengths_1_and_max_match_pytorch(exported, arch):
    ckpt, model, tok, names, pipe, _ = exported[arch]
    texts = ["good film", "the plot was very dull and boring", "", "great " * 50]
    cases = validation_cases(tok, texts)
    shapes = {name: b["input_ids"].shape for name, b in cases.items()}
    assert {s[0] for s in shapes.values()} == {1, 37}
    assert {s[1] for s in shapes.values()} >= {1, ckpt.max_length}
    ref = TorchReference.from_checkpoint(ckpt, model)
    for name, batch in cases.items():
        want, got = ref(batch), pipe(batch)
        assert set(want) == set(got)
        for key in want:
            assert got[key].shape == want[key].shape, (name, key)
            np.testing.assert_allclose(got[key], want[key], atol=2e-5, rtol=0, err_msg=f"{name}/{key}")


def test_llama_features_are_the_last_non_pad_token(exported):
    """z of a right-padded text equals z of the same text alone, and HF's own pooled logits agree."""
    ckpt, model, tok, names, pipe, _ = exported["llama"]
    short, long = "good film", "the plot was very dull and boring but the actor was great"
    pair = tok([short, long])
    assert (pair["attention_mask"][0] == 0).any()  # the short text is right-padded
    both = pipe(pair)
    alone_batch = tok([short])
    alone = pipe(alone_batch)
    np.testing.assert_allclose(both["features"][0], alone["features"][0], atol=1e-5)
    extra = ckpt.max_length - alone_batch["input_ids"].shape[1]
    padded = {k: np.pad(v, ((0, 0), (0, extra)), constant_values=tok.pad_token_id if k == "input_ids" else 0)
              for k, v in alone_batch.items()}
    np.testing.assert_allclose(pipe(padded)["features"][0], alone["features"][0], atol=1e-5)


def test_bert_features_are_the_pooled_output(exported):
    ckpt, model, tok, names, pipe, _ = exported["bert"]
    import torch

    batch = tok(["good film", "bad"])
    with torch.no_grad():
        pooled = model.bert(**{k: torch.from_numpy(v) for k, v in batch.items()}).pooler_output.numpy()
    np.testing.assert_allclose(pipe(batch)["features"], pooled, atol=1e-5)


def test_head_graph_reproduces_classifier_and_heads(exported):
    ckpt, model, _, _, pipe, _ = exported["bert"]
    z = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
    outs = dict(zip(pipe.output_names, pipe.head.run(None, {"features": z})))
    w, b = model.classifier.weight.detach().numpy(), model.classifier.bias.detach().numpy()
    np.testing.assert_allclose(outs["task_logits"], z @ w.T + b, atol=1e-5)
    for kind, head in ckpt.heads.items():
        sd = head.state_dict
        np.testing.assert_allclose(outs[f"{kind}_logits"], z @ sd["weight"].T + sd["bias"], atol=1e-5)
    assert not np.allclose(outs["adue_logits"], outs["task_logits"])  # the heads are their own weights


def _head_outputs(path, z):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"features": z})


def test_linear_heads_export_as_one_gemm_with_the_separate_layers_outputs(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    task, adue, nobias = torch.nn.Linear(16, 3), torch.nn.Linear(16, 3), torch.nn.Linear(16, 3, bias=False)
    graphs.export_head(task, {"adue": adue, "alien": nobias}, 16, tmp_path / "head.onnx")
    ops = [n.op_type for n in onnx.load(str(tmp_path / "head.onnx")).graph.node]
    assert ops.count("Gemm") + ops.count("MatMul") == 1 and "Split" in ops, ops
    z = np.random.default_rng(0).normal(size=(37, 16)).astype(np.float32)
    got = _head_outputs(tmp_path / "head.onnx", z)
    with torch.no_grad():
        want = [m(torch.from_numpy(z)).numpy() for m in (task, adue, nobias)]
    assert [g.shape for g in got] == [(37, 3)] * 3
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-6, rtol=0)


def test_a_dense_tanh_head_keeps_separate_branches(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    task, roberta = torch.nn.Linear(16, 2), graphs.DenseTanhLinear(16, 2)
    assert isinstance(graphs.head_graph_module(task, {"adue": roberta}), graphs.HeadLogits)
    graphs.export_head(task, {"adue": roberta}, 16, tmp_path / "head.onnx")
    z = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)
    got = _head_outputs(tmp_path / "head.onnx", z)
    with torch.no_grad():
        np.testing.assert_allclose(got[1], roberta(torch.from_numpy(z)).numpy(), atol=1e-6, rtol=0)
        np.testing.assert_allclose(got[0], task(torch.from_numpy(z)).numpy(), atol=1e-6, rtol=0)
