"""The loaded bundle: tokenise -> backbone.onnx -> head.onnx -> score kernels.

    from uehead import runtime
    model = runtime.load("bundle/")                 # checked, sessions built, kernels warm
    preds = model.predict(["great film", "meh"])   # Predictions of numpy arrays
    for chunk in model.iter_predict(lines()):      # streams any iterable, input order kept
        ...

Every uncertainty score is **higher = more uncertain**. Torch-free: this module imports only
numpy and the runtime's own modules; :func:`uehead.runtime.load` (in ``loading.py``) builds it.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uehead import scores as score_registry
from uehead.bundle import IncompatibleBundleError, Manifest
from uehead.errors import DataError
from uehead.runtime import kernels
from uehead.runtime.distances import Baselines
from uehead.runtime.inputs import as_text_list, check_batch_size, check_items, reject_unordered
from uehead.runtime.linear_head import LinearHead, fuse_linear_head
from uehead.runtime.sharding import ShardedRunner, run_in_calls
from uehead.runtime.predictions import Predictions
from uehead.runtime.tokenize import TextTokenizer
from uehead.token_task import SEQUENCE_CLASSIFICATION, is_token_task, require_task

__all__ = ["Model", "Predictions", "BLOCK_ROWS"]

_FIX = "re-export the bundle with `uehead export`."

#: The runtime's unit of work, in rows: backbone features collected before the head graph runs
#: (rounded down to a whole number of batches, at least one batch), the default chunk of
#: ``iter_predict``, of batch jobs (local and Ray) and the overhead benchmark's batch job. The head
#: is tiny, so its cost per call is mostly fixed (caches and code evicted by the backbone); running
#: it once per block instead of once per batch divides that cost by the batches in the block.
#: Memory: rows x feature_size float32 (1.5 MB for MiniLM).
BLOCK_ROWS = 1024


@dataclass(frozen=True, eq=False)
class _Raw:
    """Outputs for a group of texts: head-graph logits to score (the session path), or already
    scored by the fused :class:`LinearHead` (then ``task_logits`` is None)."""

    task_logits: np.ndarray | None      # [N, C] float32
    head_logits: dict[str, np.ndarray]  # kind -> [N, C]
    z: np.ndarray | None                # [N, H] when kept for distances
    probs: np.ndarray | None = None     # fused path: [N, C] float32
    label_ids: np.ndarray | None = None  # fused path: [N] int64
    scores: np.ndarray | None = None    # fused path: [2 + K, N] float32 (sr, entropy, heads)


class Model:
    """A loaded bundle, complete after construction (use :func:`load`). Thread-safe: ``predict``
    keeps no state between calls, and ONNX Runtime sessions may be run from several threads.

    Attributes: ``manifest``, ``labels`` (tuple of str), ``path`` (the bundle folder),
    ``tokenizer`` (:class:`TextTokenizer`), ``backbone_session``, ``head_session``,
    ``baselines`` (:class:`Baselines` or None when the bundle has none), ``calibration``
    (:class:`uehead.calibration.apply.Calibration` or None when the bundle is not calibrated),
    ``word_tokenizer`` (:class:`uehead.runtime.word_tokenize.WordTokenizer` of a token-classification
    bundle, else None), ``linear_head`` (:class:`~uehead.runtime.linear_head.LinearHead` when the
    head graph is one affine map of built-in head kinds, so that ``predict`` scores each block in
    one kernel call; else None and the head graph runs as a session), ``backbone_shards``
    (:class:`~uehead.runtime.sharding.ShardedRunner` that splits large batches across the cores,
    or None), ``backbone_call_tokens`` (tokens per call of a single-thread ``backbone_session``,
    :func:`~uehead.runtime.sharding.run_in_calls`; None: whole batches).
    """

    def __init__(self, path: Path, manifest: Manifest, tokenizer: TextTokenizer, backbone_session,
                 head_session, baselines: Baselines | None, calibration=None, word_tokenizer=None,
                 backbone_shards: ShardedRunner | None = None, backbone_call_tokens: int | None = None):
        self.path = Path(path)
        self.manifest = manifest
        self.labels = tuple(manifest.labels)
        self.tokenizer = tokenizer
        self.backbone_session = backbone_session
        self.head_session = head_session
        self.baselines = baselines
        self.calibration = calibration
        self.word_tokenizer = word_tokenizer
        self.backbone_shards = backbone_shards
        self.backbone_call_tokens = backbone_call_tokens
        self._heads = {h.kind: h for h in manifest.head.heads}
        self._head_outputs = [manifest.head.task_logits_name] + [h.output_name for h in self._heads.values()]
        # Resolved once: the registry's kernel of each head kind and its keyword arguments.
        self._head_scorers = {}
        for kind, spec in self._heads.items():
            entry = score_registry.head_kind(kind)
            self._head_scorers[kind] = (score_registry.resolve(entry.kernel), score_registry.head_params(entry, spec))
        self._label_array = np.asarray(self.labels, dtype=object)
        self.linear_head: LinearHead | None = None
        if not is_token_task(manifest):
            self.linear_head = fuse_linear_head(head_session, manifest.head.input_name, self._head_outputs,
                                                manifest.backbone.feature_size, len(self.labels), self._heads)

    # -- public API ------------------------------------------------------------------------
    @property
    def uncertainty_kind(self) -> str:
        return self.manifest.head.default_kind

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def predict(self, texts: str | Iterable[str], *, batch_size: int = 32, distances: bool = False,
                risk: float | None = None, coverage: float | None = None) -> Predictions:
        """Predict labels, probabilities and uncertainty scores (higher = more uncertain).

        Args:
            texts: one str or a sequence of str (empty strings are fine; texts past the maximum
                length are truncated, see :mod:`uehead.runtime.tokenize`).
            batch_size: texts per ONNX Runtime call. Texts are sorted by token length so each
                batch carries little padding; the output keeps the input order.
            distances: also compute "md" and "rmd" into ``scores`` (when the bundle has baselines;
                always when the bundle's calibration is on one of them).
            risk, coverage: on a calibrated bundle, the stored risk level that fills ``accept`` and
                the stored coverage level that fills ``prediction_sets`` (None: the defaults
                chosen at calibration). ``p_error`` is filled either way.
        Raises:
            TypeError: an item is not a str, or ``texts`` is a table (pass its text column).
            ValueError: an item holds a lone surrogate (see :mod:`uehead.runtime.inputs`).
            Both messages name the item's index.
            uehead.errors.DataError: ``risk`` / ``coverage`` is not a stored level (the message
                lists them), or is given for a bundle without calibration.
            uehead.errors.TaskMismatchError: the bundle is for token classification (use
                :meth:`predict_tokens` or :meth:`predict_entities`).
        """
        self._require_sequence("predict(texts)")
        items = as_text_list(texts)
        check_batch_size(batch_size)
        return self._predict_list(items, batch_size, distances, self._decision_levels(risk, coverage))

    def iter_predict(self, texts: str | Iterable[str], *, batch_size: int = 32, chunk_size: int = BLOCK_ROWS,
                     distances: bool = False, risk: float | None = None,
                     coverage: float | None = None) -> Iterator[Predictions]:
        """Stream Predictions, one per ``chunk_size`` texts, in input order, from any iterable
        (generators included; a single str counts as one text); memory stays bounded by the
        chunk, and the iterable is read one chunk ahead at most. Length bucketing happens within a
        chunk. Arguments are checked at call time; a non-str item (TypeError) or one holding a lone
        surrogate (ValueError) raises, naming its index in the whole stream, when its chunk is reached."""
        self._require_sequence("iter_predict(texts)")
        check_batch_size(batch_size)
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size!r}; pass a positive int.")
        if isinstance(texts, str):
            texts = [texts]
        reject_unordered(texts)
        levels = self._decision_levels(risk, coverage)
        return self._iter_chunks(iter(texts), batch_size, chunk_size, distances, levels)

    def _iter_chunks(self, iterator: Iterator, batch_size: int, chunk_size: int, distances: bool,
                     levels: tuple[float, float] | None) -> Iterator[Predictions]:
        offset = 0
        while chunk := list(itertools.islice(iterator, chunk_size)):
            check_items(chunk, offset)
            yield self._predict_list(chunk, batch_size, distances, levels)
            offset += len(chunk)

    def predict_stages(self, texts: str | Iterable[str], *, batch_size: int | None = None,
                       distances: bool = False) -> dict[str, Any]:
        """Run ``texts`` through the same pipeline as :meth:`predict` and return where the time went.

        ``batch_size=None`` runs all texts as ONE batch. Returns seconds summed over the call for
        ``tokenize``, ``backbone``, ``head`` (the head graph; with a fused ``linear_head``, the one
        kernel call that computes the head and every score), ``kernels`` (the score kernels run
        outside the head: all of them on the session path; distances and decisions when asked) and
        ``assemble`` (building the Predictions object: label names, score dict), plus ``batch_size``,
        ``n_batches``, ``shapes`` (the padded ``(rows, tokens)`` the backbone ran, in order: one per
        batch, or one per part of a batch split across the cores, each at its own width),
        ``sequence_length`` (the widest)
        and ``head_calls`` (head graph runs: one per :data:`BLOCK_ROWS` rows).
        """
        self._require_sequence("predict_stages(texts)")
        items = as_text_list(texts)
        if not items:
            raise ValueError("predict_stages needs at least one text.")
        if batch_size is None:
            batch_size = len(items)
        check_batch_size(batch_size)
        stages: dict[str, Any] = {"tokenize": 0.0, "backbone": 0.0, "head": 0.0, "kernels": 0.0, "assemble": 0.0,
                                  "shapes": []}
        self._predict_list(items, batch_size, distances, None, stages)
        stages.update(batch_size=batch_size, n_batches=-(-len(items) // batch_size),
                      sequence_length=max(w for _, w in stages["shapes"]),
                      head_calls=-(-len(items) // _block_rows(batch_size)))
        return stages

    def predict_file(self, input, output, **kwargs):
        """Batch prediction over a JSONL / CSV / Parquet file: see :mod:`uehead.runtime.batch` (and
        :mod:`uehead.runtime.token_batch` for token-classification bundles)."""
        from uehead.runtime.batch import predict_file

        return predict_file(self, input, output, **kwargs)

    def predict_tokens(self, words, *, batch_size: int = 32, distances: bool = False):
        """Tags and uncertainty per word of each sentence (token-classification bundles): a list of
        :class:`~uehead.runtime.token_predictions.TokenPrediction`, one per sentence. ``words`` is a
        list of sentences, each a list of str. See :func:`uehead.runtime.token_model.predict_tokens`."""
        from uehead.runtime.token_model import predict_tokens

        return predict_tokens(self, words, batch_size=batch_size, distances=distances)

    def predict_entities(self, texts, *, batch_size: int = 32, distances: bool = False):
        """Entities of raw strings (token-classification bundles): a list of
        :class:`~uehead.runtime.token_predictions.EntityPrediction`, one per text. See
        :func:`uehead.runtime.token_model.predict_entities`."""
        from uehead.runtime.token_model import predict_entities

        return predict_entities(self, texts, batch_size=batch_size, distances=distances)

    def __repr__(self) -> str:
        kinds = ",".join(self._heads) or "none"
        return (f"Model(path={str(self.path)!r}, labels={list(self.labels)}, heads={kinds}, "
                f"uncertainty={self.uncertainty_kind!r}, baselines={self.baselines is not None})")

    # -- internals -------------------------------------------------------------------------
    def _require_sequence(self, call: str) -> None:
        require_task(self.manifest, SEQUENCE_CLASSIFICATION, call, self.path)

    def _decision_levels(self, risk: float | None, coverage: float | None) -> tuple[float, float] | None:
        """The (risk, coverage) levels a calibrated bundle decides at; None when not calibrated.
        Checked before any work, so a wrong level fails fast and names the stored ones."""
        if self.calibration is None:
            if risk is not None or coverage is not None:
                raise DataError(f"risk={risk!r}, coverage={coverage!r} were given, but {self.path} has no "
                                "calibration.", fix="run `uehead calibrate BUNDLE --data D --out CALIBRATED` "
                                "and load the calibrated bundle.")
            return None
        return self.calibration.risk_level(risk).risk, self.calibration.coverage_level(coverage).coverage

    def _predict_list(self, texts: list[str], batch_size: int, distances: bool,
                      levels: tuple[float, float] | None, stages: dict[str, Any] | None = None) -> Predictions:
        distances = distances or (levels is not None and self.calibration.needs_distances)
        raw = self._forward(texts, batch_size, distances and self.baselines is not None, stages)
        clock = _StageClock(stages)
        preds = self._score(raw, distances, clock)
        if levels is not None:
            risk, coverage = levels
            preds = dataclasses.replace(preds, risk=risk, coverage=coverage, **self.calibration.decide(
                preds.probs, preds.scores, risk=risk, coverage=coverage))
        clock.lap("kernels")
        return preds

    def _forward(self, texts: list[str], batch_size: int, keep_z: bool,
                 stages: dict[str, Any] | None = None) -> _Raw:
        """Backbone batch by batch (texts sorted by token length), the head once per block of up
        to :data:`BLOCK_ROWS` rows (a whole number of batches): the fused linear head when the
        bundle has one (its outputs allocated before the backbone runs), else the head graph."""
        clock = _StageClock(stages)
        n, c = len(texts), self.num_classes
        shards = self.backbone_shards
        ids = self.tokenizer.encode(texts) if shards is None else shards.map_parts(self.tokenizer.encode, texts)
        clock.lap("tokenize")
        fused = self.linear_head
        if fused is not None:
            probs, label_ids = np.empty((n, c), np.float32), np.empty(n, np.int64)
            scores = np.empty((2 + len(fused.kinds), n), np.float32)
            task, heads = None, {}
        else:
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
                rows_ids = [ids[i] for i in batch]
                feeds = self.tokenizer.pad(rows_ids)
                clock.lap("tokenize")
                lengths = np.fromiter((len(x) for x in rows_ids), np.int64, len(rows_ids))
                z_block[start:start + len(batch)] = self.run_backbone(feeds, lengths)
                clock.lap("backbone", shapes=self._backbone_shapes(feeds["input_ids"].shape, lengths)
                          if clock.recording else None)
            z = z_block[:len(rows)]
            if fused is not None:
                fused.score_into(z, rows, probs, label_ids, scores)
            else:
                outs = self._run_head(z)
                task[rows] = outs[0]
                for arr, out in zip(heads.values(), outs[1:]):
                    arr[rows] = out
            if keep_z:
                z_all[rows] = z
            clock.lap("head")
        if fused is not None:
            return _Raw(None, {}, z_all, probs, label_ids, scores)
        return _Raw(task, heads, z_all)

    def run_backbone(self, feeds: dict[str, np.ndarray], lengths: np.ndarray | None = None) -> np.ndarray:
        """Features ``[rows, feature_size]`` of one right-padded batch of token ids, run as
        ``predict`` runs it: split across the cores when the batch is large enough (``lengths``,
        the tokens of each row, let each part drop its padding), else on the backbone session in
        calls of at most ``backbone_call_tokens`` tokens."""
        spec = self.manifest.backbone
        shards = self.backbone_shards
        if shards is not None and shards.can_shard(feeds["input_ids"].shape[0]):
            z = shards.run(spec.output_name, feeds, lengths)
        else:
            z = run_in_calls(self.backbone_session, spec.output_name, feeds, self.backbone_call_tokens)
        expected = (feeds["input_ids"].shape[0], spec.feature_size)
        if z.shape != expected:
            raise IncompatibleBundleError(
                f"output {spec.output_name!r} has shape {z.shape}, expected {expected} (manifest feature_size).",
                path=self.path / spec.file, fix=_FIX)
        return z.astype(np.float32, copy=False)

    def _backbone_shapes(self, shape: tuple[int, int], lengths: np.ndarray) -> list[tuple[int, int]]:
        """(rows, width) of what :meth:`run_backbone` runs for a batch of ``shape``: the parts of a
        split batch at their own widths, else the batch (for FLOP counts)."""
        shards = self.backbone_shards
        if shards is not None and shards.can_shard(shape[0]):
            return [(n, w) for _, n, w in shards.part_shapes(shape[0], shape[1], lengths)]
        return [(int(shape[0]), int(shape[1]))]

    def _run_head(self, z: np.ndarray) -> list[np.ndarray]:
        return self.head_session.run(self._head_outputs, {self.manifest.head.input_name: z})

    def _score(self, raw: _Raw, distances: bool, clock: _StageClock) -> Predictions:
        if raw.task_logits is not None:
            return self._score_logits(raw.task_logits, raw.head_logits, raw.z, distances, clock)
        sc = raw.scores
        scores = {"sr": sc[0], "entropy": sc[1], **{k: sc[2 + i] for i, k in enumerate(self.linear_head.kinds)}}
        return self._predictions(raw.probs, raw.label_ids, scores, raw.z, distances, clock)

    def score_outputs(self, task_logits: np.ndarray, head_logits: dict[str, np.ndarray], z: np.ndarray | None = None,
                      *, distances: bool = False) -> Predictions:
        """Predictions of head-graph outputs, one row each (a text, or a word of a token bundle):
        task logits [N, C], kind -> head logits [N, C], and features z [N, H] for ``distances``."""
        return self._score_logits(task_logits, head_logits, z, distances, _StageClock(None))

    def _score_logits(self, task_logits, head_logits, z, distances: bool, clock: _StageClock) -> Predictions:
        probs, sr, ent, _ = kernels.task_outputs(task_logits)
        scores = {"sr": sr, "entropy": ent}
        for kind, logits in head_logits.items():
            kernel, params = self._head_scorers[kind]
            scores[kind] = np.asarray(kernel(logits, **params), dtype=np.float32)
        label_ids = task_logits.argmax(axis=1).astype(np.int64) if len(task_logits) else np.zeros(0, np.int64)
        return self._predictions(probs, label_ids, scores, z, distances, clock)

    def _predictions(self, probs: np.ndarray, label_ids: np.ndarray, scores: dict[str, np.ndarray],
                     z: np.ndarray | None, distances: bool, clock: _StageClock) -> Predictions:
        """Distances (when asked) clocked as kernels, then the Predictions object clocked as assemble."""
        if distances and self.baselines is not None:
            scores["md"] = self.baselines.md(z).astype(np.float32)
            scores["rmd"] = self.baselines.rmd(z).astype(np.float32)
        clock.lap("kernels")
        kind = self.uncertainty_kind
        preds = Predictions(labels=self._label_array[label_ids].tolist(), label_ids=label_ids, probs=probs,
                            uncertainty=scores[kind], uncertainty_kind=kind, softmax_response=scores["sr"],
                            entropy=scores["entropy"], scores=scores)
        clock.lap("assemble")
        return preds


class _StageClock:
    """Adds the wall time since the previous lap to ``stages[name]``; does nothing when ``stages`` is None."""

    __slots__ = ("stages", "t")

    def __init__(self, stages: dict[str, Any] | None):
        self.stages = stages
        self.t = time.perf_counter() if stages is not None else 0.0

    @property
    def recording(self) -> bool:
        return self.stages is not None

    def lap(self, name: str, shapes: list[tuple[int, int]] | None = None) -> None:
        if self.stages is None:
            return
        now = time.perf_counter()
        self.stages[name] += now - self.t
        self.t = now
        if shapes:
            self.stages["shapes"].extend((int(b), int(s)) for b, s in shapes)


def _block_rows(batch_size: int) -> int:
    """Rows per head-graph call: :data:`BLOCK_ROWS` rounded down to whole batches, at least one batch."""
    return batch_size * max(1, BLOCK_ROWS // batch_size)

