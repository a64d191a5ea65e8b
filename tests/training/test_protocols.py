"""The two training protocols: the authors' head recipe against torch's own Adam + OneCycleLR,
early stopping, LoRA best-epoch selection, and the do-no-harm default score end to end."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training_settings import SMALL_BASELINE, SMALL_GRID
from uehead.evaluation.metrics import roc_auc_rows
from uehead.scores import softmax_response
from uehead.training import checkpoint, train
from uehead.training.config import AUTHORS_GRID, AUTHORS_LORA, HeadGridConfig, LoraSettings, TrainConfig
from uehead.training.fit import HeadFitError, fit_heads, fit_variant, one_cycle_factor
from uehead.training.heads import HeadVariant
from uehead.training.losses import adue_uncertainty, alignment, clamped_bce, l2sp


@pytest.mark.parametrize("total", [1, 2, 7, 50, 333])
def test_one_cycle_factor_equals_torch_onecyclelr(total):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total, cycle_momentum=False)
    for step in range(total):
        assert one_cycle_factor(step, total) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        opt.step()
        sched.step()


def _problem(n=240, h=6, c=3, seed=0):
    rng = np.random.RandomState(seed)
    z = rng.normal(size=(n, h))
    w = rng.normal(size=(c, h))
    b = rng.normal(size=c) * 0.1
    logits = z @ w.T + b
    labels = np.where(rng.rand(n) < 0.7, logits.argmax(1), rng.randint(0, c, n))
    errors = (logits.argmax(1) != labels).astype(np.int8)
    return z, logits, errors, {"weight": w, "bias": b}


def test_authors_recipe_equals_torch_adam_with_onecycle_and_normalised_loss():
    """One grid point, three epochs: our stacked hand-written Adam with the one-cycle factor and the
    (1 - 1/C) normalisation must land on torch.optim.Adam + OneCycleLR's weights."""
    z, logits, errors, cls = _problem()
    grid = HeadGridConfig(lrs=(3e-2,), epochs=(3,), alphas=(0.5,), betas=(0.1,), batch_size=50,
                          schedule="one_cycle_cosine", normalize_adue=True)
    fit_idx, sel_idx = np.arange(160), np.arange(160, 240)
    var = HeadVariant("adue", "adue", "classifier", "linear", grid.alphas, grid.betas)
    res = fit_variant(var, cls, z, logits, errors, fit_idx, sel_idx, grid, seed=3)
    assert res.hyperparameters_["normalized"] and res.hyperparameters_["schedule"] == "one_cycle_cosine"

    scale = 1.0 / (1.0 - 1.0 / 3)
    zt = torch.as_tensor(z[fit_idx])
    et = torch.as_tensor(errors[fit_idx], dtype=torch.float64)
    target = torch.as_tensor(softmax_response(logits[fit_idx]) * scale)
    init = {k: torch.as_tensor(v) for k, v in cls.items()}
    params = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    opt = torch.optim.Adam(params.values(), lr=3e-2)
    steps = 3 * int(np.ceil(160 / 50))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-2, total_steps=steps, cycle_momentum=False)
    gen = torch.Generator().manual_seed(3)
    snapshots, aucs = [], []
    for _ in range(3):
        for batch in torch.randperm(160, generator=gen).split(50):
            out = zt[batch] @ params["weight"].T + params["bias"]
            u = (adue_uncertainty(out, 100.0) * scale).clamp(0, 1)
            loss = clamped_bce(u, et[batch], 1e-6) + 0.5 * alignment(u, target[batch]) + 0.1 * l2sp(
                {k: v[None] for k, v in params.items()}, {k: v[None] for k, v in init.items()})[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        snapshots.append({k: v.detach().numpy().copy() for k, v in params.items()})
    # grid.epochs=(3,) without patience: only epoch 3 is a candidate
    np.testing.assert_allclose(res.params_["weight"], snapshots[-1]["weight"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.params_["bias"], snapshots[-1]["bias"], rtol=1e-9, atol=1e-12)


def test_early_stopping_keeps_each_points_best_epoch():
    z, logits, errors, cls = _problem(seed=1)
    grid = dataclasses.replace(AUTHORS_GRID, lrs=(5e-2, 0.0), alphas=(0.0,), betas=(0.0,), epochs=(30,),
                               patience=3, batch_size=64)
    var = HeadVariant("adue", "adue", "classifier", "linear", grid.alphas, grid.betas)
    res = fit_variant(var, cls, z, logits, errors, np.arange(160), np.arange(160, 240), grid, seed=0)
    by_lr = {row["lr"]: row for row in res.grid_}
    assert set(by_lr) == {5e-2, 0.0} and len(res.grid_) == 2
    # lr 0 never changes: its best epoch is the first evaluated one, with the initial ROC-AUC
    assert by_lr[0.0]["epochs"] == 1 and by_lr[0.0]["roc_auc"] == pytest.approx(res.init_roc_auc_)
    assert res.roc_auc_ == max(r["roc_auc"] for r in res.grid_)
    assert 1 <= res.hyperparameters_["epochs"] <= 30 and res.hyperparameters_["patience"] == 3


def test_authors_fit_reads_train_rows_and_selects_on_all_valid():
    z, logits, errors, cls = _problem(n=300, seed=2)
    grid = dataclasses.replace(AUTHORS_GRID, lrs=(1e-2,), alphas=(0.1,), betas=(0.1,), epochs=(4,), patience=2)
    var = [HeadVariant("adue", "adue", "classifier", "linear", grid.alphas, grid.betas)]
    res = fit_heads(var, cls, z[200:], logits[200:], errors[200:], grid, train=(z[:200], logits[:200], errors[:200]))
    assert (res["adue"].n_fit_, res["adue"].n_select_) == (200, 100)
    no_errors = np.zeros(200, dtype=np.int8)
    with pytest.raises(HeadFitError, match="200 training rows"):
        fit_heads(var, cls, z[200:], logits[200:], errors[200:], grid, train=(z[:200], logits[:200], no_errors))


def test_protocol_defaults_and_refusals(tmp_path):
    base = dict(model="minilm", data="rotten_tomatoes", out=tmp_path / "x")
    ours, theirs = TrainConfig(**base), TrainConfig(**base, protocol="authors")
    assert (ours.epochs, ours.lora, ours.grid) == (3, LoraSettings(), HeadGridConfig())
    assert (theirs.epochs, theirs.lora, theirs.grid) == (30, AUTHORS_LORA, AUTHORS_GRID)
    assert TrainConfig(**base, protocol="authors", epochs=5).epochs == 5
    assert list(itertools.product(AUTHORS_GRID.lrs, AUTHORS_GRID.alphas, AUTHORS_GRID.betas)).__len__() == 27
    with pytest.raises(ValueError, match="protocol='nope'"):
        TrainConfig(**base, protocol="nope")
    with pytest.raises(ValueError, match="token classification"):
        TrainConfig(**base, protocol="authors", task="token-classification")
    with pytest.raises(ValueError, match="finetune='partly'"):
        TrainConfig(**base, finetune="partly")
    with pytest.raises(ValueError, match="early stopping"):
        HeadGridConfig(epochs=(5, 10), patience=2)


def test_lora_keeps_the_best_epoch(bert_dir):
    """A score sequence 0.2, 0.9, 0.5: the weights after training are epoch 2's, not epoch 3's."""
    from uehead.training import backbones
    from uehead.training.data import encode
    from uehead.training.lora import train_lora

    source = backbones.resolve_model(str(bert_dir))
    model, tok, family = backbones.load_backbone(source, ("a", "b"), 16)
    rng = np.random.RandomState(0)
    texts = [" ".join(rng.choice(["good", "bad", "fine", "awful", "nice"], 5)) for _ in range(48)]
    enc = encode(tok, texts, rng.randint(0, 2, 48), 16)
    labels = torch.as_tensor(enc.labels)
    seq, snaps, history = iter([0.2, 0.9, 0.5]), [], []

    def score(peft_model):
        snaps.append({n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad})
        return next(seq)

    peft_model = train_lora(model, family, enc.ids, lambda idx, lg: torch.nn.functional.cross_entropy(lg, labels[idx]),
                            pad_id=tok.pad_token_id, settings=LoraSettings(lr=1e-2), epochs=3, batch_size=16, seed=0,
                            device=torch.device("cpu"), progress=False, score=score, history=history)
    final = {n: p.detach() for n, p in peft_model.named_parameters() if p.requires_grad}
    assert all(torch.equal(final[n], snaps[1][n]) for n in final)
    assert not all(torch.equal(final[n], snaps[2][n]) for n in final)
    assert [h.get("score") for h in history[:3]] == [0.2, 0.9, 0.5] and history[-1] == {"best_epoch": 2}


@pytest.fixture(scope="module")
def authors_ckpt(tmp_path_factory, bert_dir, tiny_data):
    grid = dataclasses.replace(AUTHORS_GRID, lrs=(1e-3,), alphas=(0.1,), betas=(0.1,), epochs=(6,), patience=2)
    return train(str(bert_dir), str(tiny_data), tmp_path_factory.mktemp("au") / "ck", protocol="authors", epochs=2,
                 max_length=32, batch_size=32, progress=False, grid=grid, baseline=SMALL_BASELINE,
                 baselines=("md",))


def test_authors_protocol_end_to_end_records_and_exports_the_default(authors_ckpt, tmp_path):
    info = checkpoint.read_training(authors_ckpt)
    assert info["protocol"] == "authors" and info["finetune"] == "lora"
    assert info["lora"]["warmup_ratio"] == pytest.approx(5 / 30)
    epochs = info["lora_epochs"]
    assert len(epochs) == 3 and 1 <= epochs[-1]["best_epoch"] <= 2 and epochs[-1]["select_rows"] == 120
    sel = info["head_selection"]["adue"]
    assert (sel["n_fit"], sel["n_select"]) == (200, 120)  # fitted on every training row, selected on valid
    _, head_cfg = checkpoint.read_head(authors_ckpt, "adue")
    assert head_cfg["hyperparameters"]["normalized"] and head_cfg["hyperparameters"]["patience"] == 2
    test = info["default_score"]
    assert test["baseline"] == "sr" and test["n_rows"] == 120 and set(test["candidates"]) == {"adue", "alien"}
    assert test["chosen"] in ("sr", "adue", "alien")
    for c in test["candidates"].values():
        assert c["ci_low"] <= c["diff"] + 1e-12 and c["significant"] == (c["ci_low"] > 0)

    from uehead.export import export_bundle
    from uehead.runtime import load

    manifest = export_bundle(authors_ckpt, tmp_path / "b", progress=False)
    assert manifest.head.default_kind == test["chosen"]
    assert manifest.reports["default_score"]["used"] == test["chosen"]
    assert load(tmp_path / "b").uncertainty_kind == test["chosen"]
    forced = export_bundle(authors_ckpt, tmp_path / "b2", progress=False, default_head="alien")
    assert forced.head.default_kind == "alien" and forced.reports["default_score"]["requested"] == "alien"


def test_uehead_protocol_records_default_on_the_select_part(tmp_path, bert_dir, tiny_data):
    out = train(str(bert_dir), str(tiny_data), tmp_path / "ck", epochs=1, max_length=32, batch_size=32,
                progress=False, grid=SMALL_GRID, baselines=())
    info = checkpoint.read_training(out)
    test = info["default_score"]
    assert test["n_rows"] == info["head_selection"]["adue"]["n_select"] and "select" in test["rows"]
    from uehead.training.fit import split_fit_select

    scores = checkpoint.read_scores(out, "valid")
    rows = split_fit_select(scores["errors"], SMALL_GRID.select_fraction, 0)[1]
    for kind in ("sr", "adue"):
        recorded = test["candidates"]["adue"]["baseline_roc_auc" if kind == "sr" else "roc_auc"]
        assert roc_auc_rows(scores[kind][rows][None], scores["errors"][rows])[0] == pytest.approx(recorded, abs=1e-6)
