"""The uehead bundle: the on-disk joint between export and runtime.

A bundle is a folder::

    manifest.json     this module's Manifest, as JSON (format name, format_version, checksums)
    backbone.onnx     token tensors -> features z            (float32 [batch, feature_size])
    head.onnx         z -> task logits + uncertainty-head logits (one output per head)
    tokenizer.json    a `tokenizers` tokenizer (truncation/padding are applied by the runtime
                      from the manifest's TokenizerSpec, not from this file)
    baselines.npz     optional: Mahalanobis statistics (numpy .npz, loaded with allow_pickle=False)
    golden.json       optional: a few texts with the outputs the exporter expects (:mod:`uehead.golden`)
    calibration.json  optional: decision layer written by `uehead calibrate` (uehead.calibration)
    scores.onnx       optional: head logits -> probs, label_id, every score and ``uncertainty`` in
                      standard ONNX operators, for apps outside Python (uehead.scores_graph);
                      the Python runtime uses its kernels, `uehead verify` checks that both agree

Only stdlib and numpy are used here. Loading never unpickles and never registers custom-op
libraries. Every problem raises a :class:`BundleError` (or subclass) naming the file and the fix.

Score directions: every uncertainty score described by a bundle is **higher = more uncertain**.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uehead.errors import (  # noqa: F401  (re-exported: the bundle error family)
    BundleError,
    BundleVersionError,
    ChecksumError,
    IncompatibleBundleError,
    MissingFileError,
    UnknownScoreError,
)
from uehead.jsonio import read_json_object, to_jsonable, write_json_atomic
from uehead.manifest_schema import check_fields, newer_format_error
from uehead.scores import DEFAULT_LAMBDA, head_kind, head_params
from uehead.token_task import SEQUENCE_CLASSIFICATION, TOKEN_POOLING, TokenTaskSpec, check_task, token_spec_from_dict

FORMAT_NAME = "uehead-bundle"
#: Bumped on any change a reader of an older version could misread.
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
#: The fixed file names inside a bundle written by ``uehead export``.
TOKENIZER_FILE = "tokenizer.json"
BACKBONE_FILE = "backbone.onnx"
HEAD_FILE = "head.onnx"
BASELINES_FILE = "baselines.npz"
GOLDEN_FILE = "golden.json"
CALIBRATION_FILE = "calibration.json"
SCORES_FILE = "scores.onnx"
#: scores.onnx's first outputs, then one per head kind (named by the kind), then UNCERTAINTY_OUTPUT.
SCORES_TASK_OUTPUTS = ("probs", "label_id", "softmax_response", "entropy")
UNCERTAINTY_OUTPUT = "uncertainty"
#: Arrays of baselines.npz (float64): class_means [C, H], precision [H, H], global_mean [H],
#: global_precision [H, H] (see :mod:`uehead.distances`).
BASELINE_KEYS = ("class_means", "precision", "global_mean", "global_precision")
#: The manifest's optional file entries (each a :class:`FileSpec` or None), in manifest order.
OPTIONAL_FILES = ("baselines", "golden", "calibration", "scores")

ARCHITECTURES = ("bert", "roberta", "llama", "other")
POOLINGS = ("pooler", "first_token", "last_token", TOKEN_POOLING)
PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class TokenizerSpec:
    """How the runtime tokenises. Must match what the model saw in training."""

    file: str
    sha256: str
    #: Maximum tokens per text, special tokens included. Longer texts are truncated.
    max_length: int
    #: Token ids of padding. The runtime pads on the right.
    pad_token_id: int
    #: Which side is cut when a text is longer than max_length ("right" keeps the beginning).
    truncation_side: str = "right"
    #: Names of the tensors the backbone takes, in order, a subset of
    #: ("input_ids", "attention_mask", "token_type_ids").
    model_input_names: tuple[str, ...] = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class BackboneSpec:
    """backbone.onnx: token tensors -> z (float32 [batch, feature_size])."""

    file: str
    sha256: str
    input_names: tuple[str, ...]
    output_name: str
    feature_size: int
    architecture: str = "bert"
    #: How z is taken from the hidden states (computed inside the graph).
    pooling: str = "pooler"
    precision: str = "fp32"
    num_parameters: int = 0
    #: Longest token sequence the backbone has position embeddings for; 0 = not recorded.
    max_positions: int = 0


@dataclass(frozen=True)
class UncertaintyHeadSpec:
    """One uncertainty head inside head.onnx."""

    kind: str
    #: Name of the head.onnx output with this head's logits ([batch, num_classes]).
    output_name: str
    #: SmoothMax temperature (AdUE only).
    lam: float = DEFAULT_LAMBDA
    #: Hyperparameters chosen on validation data, and their validation scores.
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeadSpec:
    """head.onnx: z -> task logits (the original classifier) + one output per uncertainty head."""

    file: str
    sha256: str
    input_name: str
    task_logits_name: str
    num_classes: int
    heads: tuple[UncertaintyHeadSpec, ...] = ()
    #: Which score fills Predictions.uncertainty: a kind in ``heads`` or "sr".
    default_kind: str = "sr"
    num_parameters: int = 0


@dataclass(frozen=True)
class FileSpec:
    """An optional extra file (baselines.npz, golden.json, calibration.json, scores.onnx)."""

    file: str
    sha256: str
    #: Free-form settings, e.g. {"l2_normalize": false} for baselines.
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """manifest.json. ``writer`` records the versions of uehead and its stack that wrote it."""

    labels: tuple[str, ...]
    tokenizer: TokenizerSpec
    backbone: BackboneSpec
    head: HeadSpec
    writer: dict[str, str] = field(default_factory=dict)
    baselines: FileSpec | None = None
    golden: FileSpec | None = None
    calibration: FileSpec | None = None
    #: scores.onnx; None in bundles written before it existed (they still load).
    scores: FileSpec | None = None
    #: Reports: export validation diffs, int8 deltas, training summary.
    reports: dict[str, Any] = field(default_factory=dict)
    #: "sequence-classification" (also every manifest without the field) or "token-classification".
    task: str = SEQUENCE_CLASSIFICATION
    #: Token classification only: word alignment, tag scheme, windows (:mod:`uehead.token_task`).
    token: TokenTaskSpec | None = None
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def files(self) -> dict[str, str]:
        """Every file of the bundle (manifest aside) with its expected sha256."""
        out = {
            self.tokenizer.file: self.tokenizer.sha256,
            self.backbone.file: self.backbone.sha256,
            self.head.file: self.head.sha256,
        }
        for extra in (getattr(self, name) for name in OPTIONAL_FILES):
            if extra is not None:
                out[extra.file] = extra.sha256
        return out

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _build(cls, data: Any, where: str, path: Path):
    """Build a frozen dataclass from a dict, rejecting missing fields with a clear error."""
    if not isinstance(data, dict):
        raise BundleError(f"'{where}' must be an object, got {type(data).__name__}.", path=path,
                          fix="re-export the bundle with `uehead export`.")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, f in names.items():
        if name in data:
            value = data[name]
            if isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise BundleError(f"'{where}.{name}' is missing.", path=path,
                              fix="re-export the bundle with `uehead export`.")
    return cls(**kwargs)


def manifest_from_dict(data: dict[str, Any], path: Path) -> Manifest:
    """Parse and check a manifest dict (format, version, kinds). Files are not touched."""
    if not isinstance(data, dict):
        raise BundleError("the manifest is not a JSON object.", path=path,
                          fix="re-export the bundle with `uehead export`.")
    fmt = data.get("format")
    if fmt != FORMAT_NAME:
        raise BundleError(f"format is {fmt!r}, expected {FORMAT_NAME!r}: this is not a uehead bundle.",
                          path=path, fix="point at a folder written by `uehead export`.")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(f"format_version {version!r} is not a positive integer.", path=path,
                          fix="re-export the bundle with `uehead export`.")
    if version > FORMAT_VERSION:
        raise newer_format_error(data, version, FORMAT_VERSION, path)
    check_fields(data, path, optional_files=OPTIONAL_FILES)
    heads = tuple(_build(UncertaintyHeadSpec, h, "head.heads[]", path)
                  for h in (data.get("head") or {}).get("heads", []))
    head_data = dict(data.get("head") or {})
    head_data["heads"] = heads
    manifest = Manifest(
        labels=tuple(data.get("labels") or ()),
        tokenizer=_build(TokenizerSpec, data.get("tokenizer"), "tokenizer", path),
        backbone=_build(BackboneSpec, data.get("backbone"), "backbone", path),
        head=_build(HeadSpec, head_data, "head", path),
        writer=dict(data.get("writer") or {}),
        **{k: None if data.get(k) is None else _build(FileSpec, data[k], k, path)
           for k in OPTIONAL_FILES},
        reports=dict(data.get("reports") or {}),
        task=data.get("task", SEQUENCE_CLASSIFICATION),
        token=token_spec_from_dict(data.get("token"), path),
        format=fmt,
        format_version=version,
    )
    _check_consistency(manifest, path)
    return manifest


def _check_consistency(m: Manifest, path: Path) -> None:
    fix = "re-export the bundle with `uehead export`."
    if len(m.labels) < 2:
        raise IncompatibleBundleError("labels must name at least 2 classes.", path=path, fix=fix)
    if m.head.num_classes != len(m.labels):
        raise IncompatibleBundleError(
            f"head.num_classes is {m.head.num_classes} but there are {len(m.labels)} labels.", path=path, fix=fix)
    for h in m.head.heads:
        try:
            head_params(head_kind(h.kind), h)
        except UnknownScoreError as exc:
            raise IncompatibleBundleError(str(exc), path=path, fix=exc.fix) from None
        except ValueError as exc:
            raise IncompatibleBundleError(str(exc), path=path, fix=fix) from None
    kinds = [h.kind for h in m.head.heads]
    if len(set(kinds)) != len(kinds):
        raise IncompatibleBundleError(f"head kinds repeat: {kinds}.", path=path, fix=fix)
    if m.head.default_kind not in (*kinds, "sr"):
        raise IncompatibleBundleError(
            f"head.default_kind {m.head.default_kind!r} is not 'sr' nor one of the heads {kinds}.",
            path=path, fix=fix)
    if m.backbone.precision not in PRECISIONS:
        raise IncompatibleBundleError(f"backbone.precision {m.backbone.precision!r} not in {PRECISIONS}.",
                                      path=path, fix=fix)
    if m.backbone.pooling not in POOLINGS:
        raise IncompatibleBundleError(f"backbone.pooling {m.backbone.pooling!r} not in {POOLINGS}.",
                                      path=path, fix=fix)
    if tuple(m.tokenizer.model_input_names) != tuple(m.backbone.input_names):
        raise IncompatibleBundleError(
            f"tokenizer.model_input_names {list(m.tokenizer.model_input_names)} differ from "
            f"backbone.input_names {list(m.backbone.input_names)}.", path=path, fix=fix)
    if m.tokenizer.max_length < 1:
        raise IncompatibleBundleError("tokenizer.max_length must be >= 1.", path=path, fix=fix)
    check_task(m.task, m.token, m.labels, path)
    for name in m.files():
        if Path(name).name != name or name in ("", ".", ".."):
            raise BundleError(f"file name {name!r} must be a plain name inside the bundle folder.",
                              path=path, fix=fix)


def read_manifest(bundle_dir: str | os.PathLike) -> Manifest:
    """Read and check ``manifest.json`` (no checksums: see :func:`verify_files`)."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise MissingFileError("is not a folder.", path=root,
                               fix="pass the bundle folder written by `uehead export`.")
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise MissingFileError("is missing.", path=path,
                               fix="pass the bundle folder written by `uehead export` (it holds manifest.json).")
    return manifest_from_dict(read_json_object(path, BundleError, "re-export the bundle with `uehead export`."), path)


def verify_files(bundle_dir: str | os.PathLike, manifest: Manifest) -> None:
    """Check that every file exists and has the manifest's sha256."""
    root = Path(bundle_dir)
    for name, expected in manifest.files().items():
        path = root / name
        if not path.is_file():
            raise MissingFileError("is missing from the bundle.", path=path,
                                   fix="copy the complete bundle folder, or re-export it.")
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumError(f"sha256 {actual[:12]}... does not match the manifest's {expected[:12]}...: "
                                "the file was altered or truncated.", path=path,
                                fix="restore the original file, or re-export the bundle.")


def load_manifest(bundle_dir: str | os.PathLike, *, check_files: bool = True) -> Manifest:
    """Read the manifest and (by default) verify every file's presence and checksum."""
    manifest = read_manifest(bundle_dir)
    if check_files:
        verify_files(bundle_dir, manifest)
    return manifest


def with_checksums(bundle_dir: str | os.PathLike, manifest: Manifest) -> Manifest:
    """Return a copy of ``manifest`` whose sha256 fields are computed from the files on disk."""
    root = Path(bundle_dir)

    def fill(spec):
        return None if spec is None else dataclasses.replace(spec, sha256=sha256_file(root / spec.file))

    return dataclasses.replace(
        manifest,
        tokenizer=fill(manifest.tokenizer),
        backbone=fill(manifest.backbone),
        head=fill(manifest.head),
        **{name: fill(getattr(manifest, name)) for name in OPTIONAL_FILES},
    )


def write_manifest(bundle_dir: str | os.PathLike, manifest: Manifest) -> Path:
    """Fill checksums from disk, check the result, and write manifest.json atomically."""
    root = Path(bundle_dir)
    manifest = with_checksums(root, manifest)
    path = root / MANIFEST_FILE
    manifest_from_dict(manifest.to_dict(), path)  # the same checks a reader runs
    return write_json_atomic(path, manifest.to_dict())
