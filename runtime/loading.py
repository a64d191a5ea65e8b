"""``load(bundle)``: read and check a bundle folder, build its sessions, return a ready Model.

Torch-free: ONNX Runtime, numpy, tokenizers and the kernels only.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from uehead.bundle import BundleError, IncompatibleBundleError, Manifest, MissingFileError, load_manifest
from uehead.calibration.apply import load_calibration
from uehead.manifest_checksum import check_manifest_sha256
from uehead.runtime import kernels
from uehead.runtime.distances import load_baselines
from uehead.runtime.model import Model
from uehead.runtime.session import default_threads, make_session
from uehead.runtime.sharding import CALL_TOKENS, ShardedRunner
from uehead.runtime.tokenize import TextTokenizer
from uehead.runtime.word_tokenize import WordTokenizer
from uehead.token_task import is_token_task

__all__ = ["load"]

_FIX = "re-export the bundle with `uehead export`."


def load(bundle_dir: str | os.PathLike, *, threads: int | None = None, providers: list | tuple | None = None,
         graph_optimization: str = "all", check_files: bool = True, head_threads: int = 1,
         warmup: bool = True, expected_sha256: str | None = None, shard_batches: bool = True,
         call_tokens: int | None = CALL_TOKENS) -> Model:
    """Load a bundle folder into a ready :class:`Model`.

    Reads ``manifest.json`` (and checks every file's sha256 unless ``check_files=False``), builds
    the backbone and head sessions (``threads`` intra-op threads for the backbone, default the
    physical cores; ``head_threads`` for the tiny head graph), checks the graphs' input/output
    names and shapes against the manifest, loads ``baselines.npz`` (never unpickling) and
    ``calibration.json`` (refused when it was fitted on other graphs), and warms the kernels and
    both graphs with one empty text (``warmup``). ``expected_sha256``: the sha256 (hex) that
    ``manifest.json`` must have, pinned from a trusted source (see :mod:`uehead.manifest_checksum`).
    ``shard_batches`` (sequence classification, ``threads`` >= 2): a batch of at least
    :data:`~uehead.runtime.sharding.MIN_SHARD_ROWS` rows per thread is split into one part per
    thread, each run by a single-thread backbone session side by side
    (:mod:`uehead.runtime.sharding`: faster than ONNX Runtime's intra-op threads on these graphs;
    the second, single-thread backbone session is built on the first batch large enough to split);
    smaller batches use the intra-op session. ``call_tokens``: a single-thread backbone run (each
    part of a split batch; every batch when ``threads=1``) goes as calls of at most this many
    tokens, so that its activations stay in the caches (measured faster; ``None``: whole batches).

    Raises:
        uehead.bundle.BundleError (or a subclass: MissingFileError, ChecksumError,
        BundleVersionError, IncompatibleBundleError) naming the file and the fix.
    """
    if call_tokens is not None and (isinstance(call_tokens, bool) or not isinstance(call_tokens, int)
                                    or call_tokens < 1):
        raise ValueError(f"call_tokens={call_tokens!r}; pass a positive number of tokens per backbone call, "
                         f"or None for whole batches.")
    root = Path(bundle_dir)
    check_manifest_sha256(root, expected_sha256)
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
    token = is_token_task(manifest)
    words = WordTokenizer(root / manifest.tokenizer.file, manifest.tokenizer, manifest.token.window_overlap) \
        if token else None
    threads = threads if threads is not None else default_threads()
    shards = None
    if shard_batches and threads >= 2 and not token:
        shards = ShardedRunner(functools.partial(_session, root / manifest.backbone.file, threads=1, **opts), threads,
                               call_tokens=call_tokens)
    model = Model(root, manifest, tokenizer, backbone, head, baselines, load_calibration(root, manifest),
                  word_tokenizer=words, backbone_shards=shards,
                  backbone_call_tokens=call_tokens if threads == 1 and not token else None)
    if warmup:
        kernels.warmup()
        if token:
            model.predict_tokens([["warm", "up"]], distances=True)
        else:
            model.predict([""], distances=True)
    return model


def _session(path: Path, **kwargs):
    if not path.is_file():  # only reachable with check_files=False
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
    expected = ["batch", "sequence", h] if is_token_task(m) else ["batch", h]  # token bundles: every position
    if len(zdims) != len(expected) or (isinstance(zdims[-1], int) and zdims[-1] != h):
        fail(bpath, f"output {m.backbone.output_name!r} has shape {zdims}, expected [{', '.join(map(str, expected))}] "
                    f"(manifest backbone.feature_size, task {m.task}).")

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
