"""The uehead training checkpoint: the on-disk joint between training and export.

A checkpoint is a folder (``uehead train --out CKPT``)::

    model/                      merged Hugging Face classifier + fast tokenizer (save_pretrained)
    heads/<kind>.safetensors    one uncertainty head's weights (float32), keyed as HEAD_MODULE_KEYS
                                says for its module (a copy of the task classifier on z)
    heads/<kind>.json           the head's settings: kind, lam, module, in_features, num_classes,
                                bias, init, hyperparameters, validation
    baselines/md.npz            Mahalanobis statistics of raw z (uehead.bundle.BASELINE_KEYS, float64)
    baselines/md_l2.npz         the same statistics of L2-normalised z
    scores/{valid,test}.npz     labels, predictions, errors (int8) + one float64 array per method
    training.json               the run record (see :func:`write_training`), with format_version

Only numpy, json and (imported when a head is read or written) safetensors are used: the
checkpoint can be read without torch. Nothing is pickled. Every problem raises
:class:`CheckpointError` naming the file and the fix. Every score array is **higher = more
uncertain**.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uehead.architectures import (ARCHITECTURE_OF_MODEL_TYPE, HEAD_MODULE_KEYS, POOLING_OF, dense_head_prefixes,
                                  hidden_size_of)
from uehead.bundle import BASELINE_KEYS
from uehead.errors import CheckpointError, UnknownScoreError
from uehead.jsonio import read_json_object, write_json_atomic
from uehead.scores import DEFAULT_LAMBDA, head_kind, head_kinds, head_params
from uehead.token_task import ALIGNMENTS, SEQUENCE_CLASSIFICATION, TASKS, TOKEN_CLASSIFICATION, TOKEN_POOLING

__all__ = [
    "FORMAT_VERSION", "MODEL_DIR", "HEADS_DIR", "BASELINES_DIR", "SCORES_DIR", "TRAINING_JSON", "SCORE_META",
    "CheckpointError", "HeadWeights", "Checkpoint", "read_checkpoint",
    "is_checkpoint", "model_dir", "resolve_model_dir", "write_json", "write_training", "write_head", "write_md",
    "write_scores", "read_training", "read_head", "read_md", "read_scores",
]

#: Bumped on any change a reader of an older version could misread. A training.json without the
#: field was written before it existed, by the layout of version 1.
FORMAT_VERSION = 1
MODEL_DIR, HEADS_DIR, BASELINES_DIR, SCORES_DIR = "model", "heads", "baselines", "scores"
TRAINING_JSON = "training.json"
MD_FILE, MD_L2_FILE = "md.npz", "md_l2.npz"
#: Arrays of every scores/<split>.npz besides the per-method scores.
SCORE_META = ("labels", "predictions", "errors")
_RETRAIN = "re-run `uehead train`."


# ------------------------------------------------------------------------------- layout
def model_dir(root: str | os.PathLike) -> Path:
    return Path(root) / MODEL_DIR


def _head_files(root: str | os.PathLike, kind: str) -> tuple[Path, Path]:
    """(weights, settings) files of head ``kind``."""
    folder = Path(root) / HEADS_DIR
    return folder / f"{kind}.safetensors", folder / f"{kind}.json"


def _md_file(root: str | os.PathLike, l2: bool) -> Path:
    return Path(root) / BASELINES_DIR / (MD_L2_FILE if l2 else MD_FILE)


def _scores_file(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / SCORES_DIR / f"{split}.npz"


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a training.json (a checkpoint, finished or not checked)."""
    return (Path(path) / TRAINING_JSON).is_file()


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """CKPT/model for a checkpoint, or ``path`` itself when it is a Hugging Face model folder."""
    root = Path(path)
    for folder in (model_dir(root), root):
        if (folder / "config.json").is_file():
            return folder
    raise CheckpointError("has no config.json, in itself or in its model/ folder.", path=root,
                          fix="pass a checkpoint written by `uehead train` (CKPT/model) or a Hugging Face "
                              "model folder.")


# ------------------------------------------------------------------------------- writing
def write_json(path: str | os.PathLike, data: dict) -> None:
    """JSON with numpy scalars as numbers and NaN/inf as null (:func:`uehead.jsonio.to_jsonable`)."""
    write_json_atomic(path, data)


def write_training(root: str | os.PathLike, record: dict) -> Path:
    """training.json: ``record`` plus ``format_version``.

    Keys the training stage writes: uehead_version, versions, model, architecture, pooling, data,
    num_classes, label_names, seed, max_train, epochs, max_length, batch_size, device, lora,
    heads, ablations, baselines, n_rows, accuracy ({split: float}), roc_auc_test ({method: float |
    None}), head_selection, rde, merge_max_abs_diff, config, timings_s. Export needs max_length
    and reads architecture, pooling and label_names when present (see :func:`read_checkpoint`).
    Token classification adds task, alignment, tag_scheme, window_overlap, bio_fixes, n_words,
    n_windows, unscored_words and f1 (:mod:`uehead.training.token_train`); a record without
    ``task`` is sequence classification.
    """
    path = Path(root) / TRAINING_JSON
    write_json(path, {"format_version": FORMAT_VERSION, **record})
    return path


def write_head(root: str | os.PathLike, kind: str, params: dict[str, np.ndarray], config: dict) -> Path:
    """``heads/<kind>.safetensors`` (float32) + ``heads/<kind>.json`` (``config`` plus ``kind``)."""
    from safetensors.numpy import save_file

    weights, settings = _head_files(root, kind)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()},
              str(weights), metadata={"kind": kind, "format": "uehead-head"})
    write_json(settings, {"kind": kind, **config})
    return weights


def write_md(root: str | os.PathLike, arrays: dict[str, np.ndarray], l2: bool) -> Path:
    """``baselines/md.npz`` (or ``md_l2.npz``): the Mahalanobis statistics as float64."""
    path = _md_file(root, l2)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})
    return path


def write_scores(root: str | os.PathLike, split: str, labels: np.ndarray, predictions: np.ndarray,
                 errors: np.ndarray, scores: dict[str, np.ndarray]) -> Path:
    """``scores/<split>.npz``: SCORE_META arrays + one float64 array per method (higher = more uncertain)."""
    arrays = {"labels": np.asarray(labels, dtype=np.int64), "predictions": np.asarray(predictions, dtype=np.int64),
              "errors": np.asarray(errors, dtype=np.int8)}
    for name, values in scores.items():
        if name in arrays:
            raise ValueError(f"score name {name!r} clashes with a metadata array")
        arrays[name] = np.asarray(values, dtype=np.float64)
    path = _scores_file(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------- reading
def _read_json(path: Path, fix: str = _RETRAIN) -> dict[str, Any]:
    return read_json_object(path, CheckpointError, fix)


def _read_npz(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise CheckpointError("is missing.", path=path, fix=_RETRAIN)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"cannot be read as a numpy .npz without pickles ({exc}).", path=path,
                              fix=_RETRAIN) from exc
    missing = [k for k in required if k not in arrays]
    if missing:
        raise CheckpointError(f"lacks arrays {missing}.", path=path, fix=_RETRAIN)
    return arrays


def read_training(root: str | os.PathLike) -> dict[str, Any]:
    """training.json as a dict, after checking its ``format_version`` (absent: version 1)."""
    path = Path(root) / TRAINING_JSON
    record = _read_json(path, "re-run `uehead train` (it writes training.json).")
    version = record.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"format_version {version!r} is not a positive integer.", path=path, fix=_RETRAIN)
    if version > FORMAT_VERSION:
        writer = record.get("uehead_version", "a newer uehead")
        raise CheckpointError(
            f"format_version {version} is newer than this uehead reads ({FORMAT_VERSION}); it was written by "
            f"uehead {writer}.", path=path,
            fix=f"upgrade uehead (pip install -U 'uehead>={writer}'), or re-train with this version.")
    return record


def read_head(root: str | os.PathLike, kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(weights as float32 arrays keyed like the classifier's state_dict, the head's json settings)."""
    from safetensors.numpy import load_file

    weights_path, settings_path = _head_files(root, kind)
    fix = "re-run `uehead train` (it writes heads/<kind>.json and heads/<kind>.safetensors)."
    settings = _read_json(settings_path, fix)
    if not weights_path.is_file():
        raise CheckpointError("is missing.", path=weights_path, fix=fix)
    try:
        weights = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own SafetensorError on a bad file
        raise CheckpointError(f"cannot be read by safetensors ({exc}).", path=weights_path, fix=fix) from exc
    return {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}, settings


def read_md(root: str | os.PathLike, l2: bool = False) -> dict[str, np.ndarray]:
    """The Mahalanobis statistics (BASELINE_KEYS arrays, checked finite) of raw or L2-normalised z."""
    path = _md_file(root, l2)
    arrays = _read_npz(path, BASELINE_KEYS)
    if not all(np.isfinite(arrays[k]).all() for k in BASELINE_KEYS):
        raise CheckpointError("holds NaN or inf.", path=path, fix=_RETRAIN)
    return arrays


def read_scores(root: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """``scores/<split>.npz``: SCORE_META arrays + one array per method."""
    return _read_npz(_scores_file(root, split), SCORE_META)


# ------------------------------------------------------------------------------- the checked view
@dataclass(frozen=True)
class HeadWeights:
    """One trained uncertainty head: its json settings, its weights (numpy float32) and the
    keyword arguments of its kind's score (:func:`uehead.scores.head_params`)."""

    kind: str
    meta: dict[str, Any]
    state_dict: dict[str, np.ndarray]
    params: dict[str, float] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return self.meta.get("module", "linear")

    @property
    def lam(self) -> float:
        """The json's SmoothMax temperature (recorded in the bundle's head spec for every kind)."""
        return float(self.meta.get("lam", DEFAULT_LAMBDA))


@dataclass(frozen=True)
class Checkpoint:
    """A checked checkpoint folder (:func:`read_checkpoint`). The Hugging Face model itself is not
    loaded here (see ``uehead.export.hf``)."""

    root: Path
    training: dict[str, Any]
    architecture: str
    pooling: str
    max_length: int
    label_names: tuple[str, ...]
    hidden_size: int
    #: Uncertainty heads by kind, in the registry's order (:func:`uehead.scores.head_kinds`).
    heads: dict[str, HeadWeights] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    #: ``sequence-classification`` or ``token-classification`` (:mod:`uehead.token_task`).
    task: str = SEQUENCE_CLASSIFICATION
    #: The word-alignment rule of a token-classification checkpoint (None for sequence classification).
    alignment: str | None = None

    @property
    def model_dir(self) -> Path:
        return model_dir(self.root)

    @property
    def baselines_file(self) -> Path:
        """Raw-z Mahalanobis statistics (the ones a bundle serves); may be absent."""
        return _md_file(self.root, l2=False)


def _architecture(training: dict[str, Any], config: dict[str, Any], path: Path) -> str:
    arch = training.get("architecture")
    if arch is None:
        arch = ARCHITECTURE_OF_MODEL_TYPE.get(config.get("model_type", ""))
    if arch not in POOLING_OF:
        raise CheckpointError(
            f"architecture {arch!r} (model_type {config.get('model_type')!r}) is not supported by the exporter; "
            f"it knows {sorted(POOLING_OF)}.", path=path,
            fix=f"train a classifier of a supported model_type ({', '.join(sorted(ARCHITECTURE_OF_MODEL_TYPE))}).")
    return arch


def _present_kinds(root: Path) -> list[str]:
    """Head kinds with a file in heads/, in registry order; an unregistered one raises UnknownScoreError."""
    folder = root / HEADS_DIR
    stems = {p.stem for p in folder.iterdir() if p.suffix in (".json", ".safetensors")} if folder.is_dir() else set()
    for kind in sorted(stems):
        try:
            head_kind(kind)
        except UnknownScoreError as exc:
            raise UnknownScoreError(f"holds head kind {kind!r}, which is not registered (known kinds: "
                                    f"{', '.join(head_kinds()) or 'none'}).", path=folder / f"{kind}.json",
                                    fix=exc.fix) from None
    return [k for k in head_kinds() if k in stems]


def _check_head(root: Path, kind: str, hidden: int, num_classes: int) -> HeadWeights:
    state, meta = read_head(root, kind)
    weights_path, meta_path = _head_files(root, kind)
    fix = "re-run `uehead train` (it writes heads/<kind>.json and heads/<kind>.safetensors)."
    if meta.get("kind", kind) != kind:
        raise CheckpointError(f"kind is {meta.get('kind')!r} but the file is named for {kind!r}.",
                              path=meta_path, fix=fix)
    module = meta.get("module", "linear")
    if module not in HEAD_MODULE_KEYS:
        raise CheckpointError(f"module {module!r} is not one of {sorted(HEAD_MODULE_KEYS)}.", path=meta_path, fix=fix)
    expected = set(HEAD_MODULE_KEYS[module])
    if module == "linear" and meta.get("bias", "bias" in state):
        expected.add("bias")
    if set(state) != expected:
        raise CheckpointError(f"holds keys {sorted(state)}, expected {sorted(expected)} for module {module!r}.",
                              path=weights_path, fix=fix)
    hidden_prefix, out_prefix = ("", "") if module == "linear" else dense_head_prefixes(module)
    out_w, in_w = state[out_prefix + "weight"], state[hidden_prefix + "weight"]
    chained = module == "linear" or out_w.shape[1] == in_w.shape[0]
    if out_w.shape[0] != num_classes or in_w.shape[1] != hidden or not chained:
        raise CheckpointError(
            f"weights map {in_w.shape[1]} features to {out_w.shape[0]} classes (layers {in_w.shape[::-1]}, "
            f"{out_w.shape[::-1]}); the model has hidden size {hidden} and {num_classes} classes.",
            path=weights_path, fix=fix)
    try:
        params = head_params(kind, meta)
    except ValueError as exc:
        raise CheckpointError(str(exc), path=meta_path, fix=fix) from None
    return HeadWeights(kind=kind, meta=meta, state_dict=state, params=params)


def _label_names(training: dict[str, Any], config: dict[str, Any], path: Path) -> tuple[str, ...]:
    id2label = config.get("id2label") or {}
    labels = training.get("label_names") or [id2label[k] for k in sorted(id2label, key=int)]
    if len(labels) < 2 or (id2label and len(id2label) != len(labels)):
        raise CheckpointError(f"{len(labels)} label names but config.id2label has {len(id2label)}.",
                              path=path, fix=_RETRAIN)
    return tuple(str(x) for x in labels)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint folder (training.json, the model's config.json, every head)."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError("is not a folder.", path=root, fix="pass the folder written by `uehead train --out`.")
    config = _read_json(model_dir(root) / "config.json",
                        "CKPT/model must be a Hugging Face save_pretrained folder of the merged model.")
    training = read_training(root)
    where = root / TRAINING_JSON
    arch = _architecture(training, config, where)
    task, alignment = _task(training, where)
    expected = TOKEN_POOLING if task == TOKEN_CLASSIFICATION else POOLING_OF[arch]
    pooling = training.get("pooling", expected)
    if pooling != expected:
        raise CheckpointError(f"pooling {pooling!r} does not match architecture {arch!r} and task {task!r} "
                              f"(expected {expected!r}).", path=where,
                              fix="z must be defined as METHOD.md says for the architecture.")
    max_length = training.get("max_length")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise CheckpointError(f"max_length {max_length!r} is not a positive integer.", path=where,
                              fix="write the tokenizer max_length used in training.")
    labels = _label_names(training, config, where)
    hidden = hidden_size_of(config)
    heads = {kind: _check_head(root, kind, hidden, len(labels)) for kind in _present_kinds(root)}
    return Checkpoint(root=root, training=training, architecture=arch, pooling=pooling, max_length=max_length,
                      label_names=labels, hidden_size=hidden, heads=heads,
                      format_version=training.get("format_version", 1), task=task, alignment=alignment)


def _task(training: dict[str, Any], path: Path) -> tuple[str, str | None]:
    """(task, word-alignment rule) of a record; a record without ``task`` is sequence classification."""
    task = training.get("task", SEQUENCE_CLASSIFICATION)
    if task not in TASKS:
        raise CheckpointError(f"task {task!r} is not one of {list(TASKS)}.", path=path, fix=_RETRAIN)
    if task == SEQUENCE_CLASSIFICATION:
        return task, None
    alignment = training.get("alignment")
    if alignment not in ALIGNMENTS:
        raise CheckpointError(f"alignment {alignment!r} is not one of {list(ALIGNMENTS)}.", path=path,
                              fix="upgrade uehead, or re-train with this version.")
    return task, alignment
