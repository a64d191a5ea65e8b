"""Load a bundle and predict: tokenise -> backbone.onnx -> head.onnx -> numba kernels.

    from uehead import runtime
    model = runtime.load("bundle/")                 # checked, sessions built, kernels warm
    preds = model.predict(["great film", "meh"])   # Predictions of numpy arrays
    for chunk in model.iter_predict(lines()):      # streams any iterable, input order kept
        ...

Every uncertainty score is **higher = more uncertain**. Torch-free: this module imports only
onnxruntime, numpy, tokenizers and the kernels.
"""
from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uehead.bundle import BundleError, IncompatibleBundleError, Manifest, UncertaintyHeadSpec, load_manifest
from uehead.runtime import kernels
from uehead.runtime.distances import Baselines, load_baselines
from uehead.runtime.session import make_session
from uehead.runtime.tokenize import TextTokenizer

__all__ = ["load", "Model", "Predictions", "BLOCK_ROWS"]

_FIX = "re-export the bundle with `uehead export`."

#: The runtime's unit of work, in rows: backbone features collected before the head graph runs
#: (rounded down to a whole number of batches, at least one batch), the default chunk of
#: ``iter_predict``, of batch jobs (local and Ray) and the overhead benchmark's batch job. The head
#: is tiny, so its cost per call is mostly fixed (caches and code evicted by the backbone); running
#: it once per block instead of once per batch divides that cost by the batches in the block.
#: Memory: rows x feature_size float32 (1.5 MB for MiniLM).
BLOCK_ROWS = 1024


@dataclass(frozen=True, eq=False, repr=False)
class Predictions:
    """Outputs for N texts, in input order (numpy arrays; every score higher = more uncertain).

    Attributes:
        labels: predicted label names, list of N str.
        label_ids: int64 [N], argmax of the task logits.
        probs: float32 [N, C], softmax of the task logits.
        uncertainty: float32 [N], the bundle's default score (named by ``uncertainty_kind``).
        uncertainty_kind: "adue" (1 - SmoothMax of the AdUE head), "alien" (normalised entropy
            of the ALIEN head) or "sr" (softmax response of the task logits).
        softmax_response: float32 [N], 1 - max probs.
        entropy: float32 [N], entropy of probs in nats.
        scores: every score available, name -> float32 [N]: "sr", "entropy", each head kind
            ("adue", "alien"), and "md", "rmd" when asked for and the bundle has baselines.
    """

    labels: list[str]
    label_ids: np.ndarray
    probs: np.ndarray
    uncertainty: np.ndarray
    uncertainty_kind: str
    softmax_response: np.ndarray
    entropy: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.label_ids.shape[0])

    def __repr__(self) -> str:
        return (f"Predictions(n={len(self)}, classes={self.probs.shape[1]}, "
                f"uncertainty_kind={self.uncertainty_kind!r}, scores={sorted(self.scores)})")

    @classmethod
    def concat(cls, parts: Sequence[Predictions]) -> Predictions:
        """Join several Predictions (same bundle, same score set) end to end."""
        if not parts:
            raise ValueError("Predictions.concat needs at least one part.")
        first = parts[0]
        return cls(
            labels=[label for p in parts for label in p.labels],
            label_ids=np.concatenate([p.label_ids for p in parts]),
            probs=np.concatenate([p.probs for p in parts]),
            uncertainty=np.concatenate([p.uncertainty for p in parts]),
            uncertainty_kind=first.uncertainty_kind,
            softmax_response=np.concatenate([p.softmax_response for p in parts]),
            entropy=np.concatenate([p.entropy for p in parts]),
            scores={k: np.concatenate([p.scores[k] for p in parts]) for k in first.scores},
        )


@dataclass(frozen=True, eq=False)
class _Raw:
    """Graph outputs for a group of texts, before the kernels."""

    task_logits: np.ndarray          # [N, C] float32
    head_logits: dict[str, np.ndarray]  # kind -> [N, C]
    z: np.ndarray | None             # [N, H] when kept for distances


class Model:
    """A loaded bundle, complete after construction (use :func:`load`). Thread-safe: ``predict``
    keeps no state between calls, and ONNX Runtime sessions may be run from several threads.

    Attributes: ``manifest``, ``labels`` (tuple of str), ``path`` (the bundle folder),
    ``tokenizer`` (:class:`TextTokenizer`), ``backbone_session``, ``head_session``,
    ``baselines`` (:class:`Baselines` or None when the bundle has none).
    """

    def __init__(self, path: Path, manifest: Manifest, tokenizer: TextTokenizer, backbone_session,
                 head_session, baselines: Baselines | None):
        self.path = Path(path)
        self.manifest = manifest
        self.labels = tuple(manifest.labels)
        self.tokenizer = tokenizer
        self.backbone_session = backbone_session
        self.head_session = head_session
        self.baselines = baselines
        self._heads: dict[str, UncertaintyHeadSpec] = {h.kind: h for h in manifest.head.heads}
        self._head_outputs = [manifest.head.task_logits_name] + [h.output_name for h in self._heads.values()]
        self._label_array = np.asarray(self.labels, dtype=object)

    # -- public API ------------------------------------------------------------------------
    @property
    def uncertainty_kind(self) -> str:
        return self.manifest.head.default_kind

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def predict(self, texts: str | Iterable[str], *, batch_size: int = 32, distances: bool = False) -> Predictions:
        """Predict labels, probabilities and uncertainty scores (higher = more uncertain).

        Args:
            texts: one str or a sequence of str (empty strings are fine; texts past the maximum
                length are truncated, see :mod:`uehead.runtime.tokenize`).
            batch_size: texts per ONNX Runtime call. Texts are sorted by token length so each
                batch carries little padding; the output keeps the input order.
            distances: also compute "md" and "rmd" into ``scores`` (when the bundle has baselines).
        Raises:
            TypeError: an item is not a str (the message names its index).
        """
        items = _as_text_list(texts)
        _check_batch_size(batch_size)
        return self._predict_list(items, batch_size, distances)

    def iter_predict(self, texts: str | Iterable[str], *, batch_size: int = 32, chunk_size: int = BLOCK_ROWS,
                     distances: bool = False) -> Iterator[Predictions]:
        """Stream Predictions, one per ``chunk_size`` texts, in input order, from any iterable
        (generators included; a single str counts as one text); memory stays bounded by the
        chunk, and the iterable is read one chunk ahead at most. Length bucketing happens within a
        chunk. Arguments are checked at call time; a non-str item raises TypeError (naming its
        index in the whole stream) when its chunk is reached."""
        _check_batch_size(batch_size)
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size!r}; pass a positive int.")
        if isinstance(texts, str):
            texts = [texts]
        _reject_unordered(texts)
        return self._iter_chunks(iter(texts), batch_size, chunk_size, distances)

    def _iter_chunks(self, iterator: Iterator, batch_size: int, chunk_size: int,
                     distances: bool) -> Iterator[Predictions]:
        offset = 0
        while chunk := list(itertools.islice(iterator, chunk_size)):
            _check_items(chunk, offset)
            yield self._predict_list(chunk, batch_size, distances)
            offset += len(chunk)

    def predict_stages(self, texts: str | Iterable[str], *, batch_size: int | None = None,
                       distances: bool = False) -> dict[str, Any]:
        """Run ``texts`` through the same pipeline as :meth:`predict` and return where the time went.

        ``batch_size=None`` runs all texts as ONE batch. Returns seconds summed over the call for
        ``tokenize``, ``backbone``, ``head`` (head graph) and ``kernels`` (scores, distances
        included when asked), plus ``batch_size``, ``n_batches``, ``shapes`` (the padded
        ``(rows, tokens)`` of each backbone call, in call order), ``sequence_length`` (the widest)
        and ``head_calls`` (head graph runs: one per :data:`BLOCK_ROWS` rows).
        """
        items = _as_text_list(texts)
        if not items:
            raise ValueError("predict_stages needs at least one text.")
        if batch_size is None:
            batch_size = len(items)
        _check_batch_size(batch_size)
        stages: dict[str, Any] = {"tokenize": 0.0, "backbone": 0.0, "head": 0.0, "kernels": 0.0, "shapes": []}
        self._predict_list(items, batch_size, distances, stages)
        stages.update(batch_size=batch_size, n_batches=len(stages["shapes"]),
                      sequence_length=max(w for _, w in stages["shapes"]),
                      head_calls=-(-len(items) // _block_rows(batch_size)))
        return stages

    def predict_file(self, input, output, **kwargs):
        """Batch prediction over a JSONL / CSV / Parquet file: see :mod:`uehead.runtime.batch`."""
        from uehead.runtime.batch import predict_file

        return predict_file(self, input, output, **kwargs)

    def __repr__(self) -> str:
        kinds = ",".join(self._heads) or "none"
        return (f"Model(path={str(self.path)!r}, labels={list(self.labels)}, heads={kinds}, "
                f"uncertainty={self.uncertainty_kind!r}, baselines={self.baselines is not None})")

    # -- internals -------------------------------------------------------------------------
    def _predict_list(self, texts: list[str], batch_size: int, distances: bool,
                      stages: dict[str, Any] | None = None) -> Predictions:
        raw = self._forward(texts, batch_size, distances and self.baselines is not None, stages)
        clock = _StageClock(stages)
        preds = self._score(raw, distances)
        clock.lap("kernels")
        return preds

    def _forward(self, texts: list[str], batch_size: int, keep_z: bool,
                 stages: dict[str, Any] | None = None) -> _Raw:
        """Backbone batch by batch (texts sorted by token length), the head graph once per block
        of up to :data:`BLOCK_ROWS` rows (a whole number of batches)."""
        clock = _StageClock(stages)
        n, c = len(texts), self.num_classes
        ids = self.tokenizer.encode(texts)
        clock.lap("tokenize")
        task = np.empty((n, c), np.float32)
        heads = {k: np.empty((n, c), np.float32) for k in self._heads}
        z_all = np.empty((n, self.manifest.backbone.feature_size), np.float32) if keep_z else None
        order = np.argsort(np.fromiter((len(x) for x in ids), np.int64, n), kind="stable")
        block = _block_rows(batch_size)
        z_block = np.empty((min(n, block), self.manifest.backbone.feature_size), np.float32)
        for block_start in range(0, n, block):
            rows = order[block_start:block_start + block]
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                feeds = self.tokenizer.pad([ids[i] for i in batch])
                clock.lap("tokenize")
                z_block[start:start + len(batch)] = self._run_backbone(feeds)
                clock.lap("backbone", shape=feeds["input_ids"].shape)
            z = z_block[:len(rows)]
            outs = self._run_head(z)
            task[rows] = outs[0]
            for arr, out in zip(heads.values(), outs[1:]):
                arr[rows] = out
            if keep_z:
                z_all[rows] = z
            clock.lap("head")
        return _Raw(task, heads, z_all)

    def _run_backbone(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        spec = self.manifest.backbone
        z = self.backbone_session.run([spec.output_name], feeds)[0]
        expected = (feeds["input_ids"].shape[0], spec.feature_size)
        if z.shape != expected:
            raise IncompatibleBundleError(
                f"output {spec.output_name!r} has shape {z.shape}, expected {expected} (manifest feature_size).",
                path=self.path / spec.file, fix=_FIX)
        return z.astype(np.float32, copy=False)

    def _run_head(self, z: np.ndarray) -> list[np.ndarray]:
        return self.head_session.run(self._head_outputs, {self.manifest.head.input_name: z})

    def _score(self, raw: _Raw, distances: bool) -> Predictions:
        probs, sr, ent, _ = kernels.task_outputs(raw.task_logits)
        scores = {"sr": sr, "entropy": ent}
        for kind, logits in raw.head_logits.items():
            if kind == "adue":
                scores[kind] = kernels.adue_uncertainty(logits, float(self._heads[kind].lam))
            else:
                scores[kind] = kernels.alien_uncertainty(logits)
        if distances and self.baselines is not None:
            scores["md"] = self.baselines.md(raw.z).astype(np.float32)
            scores["rmd"] = self.baselines.rmd(raw.z).astype(np.float32)
        label_ids = raw.task_logits.argmax(axis=1).astype(np.int64) if len(raw.task_logits) else np.zeros(0, np.int64)
        kind = self.uncertainty_kind
        return Predictions(labels=self._label_array[label_ids].tolist(), label_ids=label_ids, probs=probs,
                           uncertainty=scores[kind], uncertainty_kind=kind, softmax_response=sr, entropy=ent,
                           scores=scores)


class _StageClock:
    """Adds the wall time since the previous lap to ``stages[name]``; does nothing when ``stages`` is None."""

    __slots__ = ("stages", "t")

    def __init__(self, stages: dict[str, Any] | None):
        self.stages = stages
        self.t = time.perf_counter() if stages is not None else 0.0

    def lap(self, name: str, shape: tuple | None = None) -> None:
        if self.stages is None:
            return
        now = time.perf_counter()
        self.stages[name] += now - self.t
        self.t = now
        if shape is not None:
            self.stages["shapes"].append((int(shape[0]), int(shape[1])))


def _block_rows(batch_size: int) -> int:
    """Rows per head-graph call: :data:`BLOCK_ROWS` rounded down to whole batches, at least one batch."""
    return batch_size * max(1, BLOCK_ROWS // batch_size)


# -- input checks ------------------------------------------------------------------------------
def _reject_unordered(texts) -> None:
    if isinstance(texts, (bytes, bytearray, dict, set, frozenset)):
        raise TypeError(f"texts must be a str or an ordered sequence of str, got {type(texts).__name__}.")
    if not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}.")


def _check_items(items: list, offset: int = 0) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"texts[{offset + i}] is {type(item).__name__} ({item!r:.60}), expected str; "
                            "convert or drop non-text items first.")


def _as_text_list(texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    _reject_unordered(texts)
    items = list(texts)
    _check_items(items)
    return items


def _check_batch_size(batch_size) -> None:
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; pass a positive int.")


# -- loading ------------------------------------------------------------------------------------
def load(bundle_dir: str | os.PathLike, *, threads: int | None = None, providers: list | tuple | None = None,
         graph_optimization: str = "all", check_files: bool = True, head_threads: int = 1,
         warmup: bool = True) -> Model:
    """Load a bundle folder into a ready :class:`Model`.

    Reads ``manifest.json`` (and checks every file's sha256 unless ``check_files=False``), builds
    the backbone and head sessions (``threads`` intra-op threads for the backbone, default the
    physical cores; ``head_threads`` for the tiny head graph), checks the graphs' input/output
    names and shapes against the manifest, loads ``baselines.npz`` (never unpickling), and warms
    the kernels and both graphs with one empty text (``warmup``).

    Raises:
        uehead.bundle.BundleError (or a subclass: MissingFileError, ChecksumError,
        BundleVersionError, IncompatibleBundleError) naming the file and the fix.
    """
    root = Path(bundle_dir)
    manifest = load_manifest(root, check_files=check_files)
    tokenizer = TextTokenizer(root / manifest.tokenizer.file, manifest.tokenizer)
    opts = dict(providers=providers, graph_optimization=graph_optimization)
    backbone = _session(root / manifest.backbone.file, threads=threads, **opts)
    head = _session(root / manifest.head.file, threads=head_threads, **opts)
    _check_graphs(root, manifest, backbone, head)
    baselines = None
    if manifest.baselines is not None:
        baselines = load_baselines(root / manifest.baselines.file, num_classes=len(manifest.labels),
                                   feature_size=manifest.backbone.feature_size,
                                   l2_normalize=bool(manifest.baselines.settings.get("l2_normalize", False)))
    model = Model(root, manifest, tokenizer, backbone, head, baselines)
    if warmup:
        kernels.warmup()
        model.predict([""], distances=True)
    return model


def _session(path: Path, **kwargs):
    if not path.is_file():  # only reachable with check_files=False
        from uehead.bundle import MissingFileError

        raise MissingFileError("is missing from the bundle.", path=path, fix="copy the complete bundle folder.")
    try:
        return make_session(path, **kwargs)
    except ValueError:
        raise  # a bad session option: the message names it
    except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
        raise BundleError(f"ONNX Runtime cannot load this graph ({type(exc).__name__}: {exc}).", path=path,
                          fix=_FIX) from exc


def _dims(node) -> list:
    return list(node.shape) if node.shape is not None else []


def _check_graphs(root: Path, m: Manifest, backbone, head) -> None:
    """Graph inputs/outputs against the manifest; static dims must agree (symbolic ones pass)."""
    bpath, hpath = root / m.backbone.file, root / m.head.file
    h, c = m.backbone.feature_size, m.head.num_classes

    def fail(path, msg):
        raise IncompatibleBundleError(msg, path=path, fix=_FIX)

    b_inputs = {i.name: i for i in backbone.get_inputs()}
    if set(b_inputs) != set(m.backbone.input_names):
        fail(bpath, f"graph inputs {sorted(b_inputs)} differ from the manifest's backbone.input_names "
                    f"{list(m.backbone.input_names)}.")
    for name, node in b_inputs.items():
        if node.type != "tensor(int64)" or len(_dims(node)) != 2:
            fail(bpath, f"input {name!r} is {node.type} {_dims(node)}, expected int64 [batch, sequence].")
    b_outputs = {o.name: o for o in backbone.get_outputs()}
    if m.backbone.output_name not in b_outputs:
        fail(bpath, f"has no output {m.backbone.output_name!r} (outputs: {sorted(b_outputs)}).")
    zdims = _dims(b_outputs[m.backbone.output_name])
    if len(zdims) != 2 or (isinstance(zdims[1], int) and zdims[1] != h):
        fail(bpath, f"output {m.backbone.output_name!r} has shape {zdims}, expected [batch, {h}] "
                    f"(manifest backbone.feature_size).")

    h_inputs = head.get_inputs()
    if [i.name for i in h_inputs] != [m.head.input_name]:
        fail(hpath, f"graph inputs {[i.name for i in h_inputs]} differ from the manifest's "
                    f"head.input_name {m.head.input_name!r}.")
    hdims = _dims(h_inputs[0])
    if h_inputs[0].type != "tensor(float)" or len(hdims) != 2 or (isinstance(hdims[1], int) and hdims[1] != h):
        fail(hpath, f"input {m.head.input_name!r} is {h_inputs[0].type} {hdims}, expected float32 [batch, {h}]: "
                    f"the head does not fit the backbone's features (feature_size {h}).")
    h_outputs = {o.name: o for o in head.get_outputs()}
    for name in [m.head.task_logits_name] + [x.output_name for x in m.head.heads]:
        if name not in h_outputs:
            fail(hpath, f"has no output {name!r} (outputs: {sorted(h_outputs)}).")
        dims = _dims(h_outputs[name])
        if len(dims) != 2 or (isinstance(dims[1], int) and dims[1] != c):
            fail(hpath, f"output {name!r} has shape {dims}, expected [batch, {c}] ({c} labels).")
