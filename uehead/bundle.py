"""The uehead bundle: the on-disk joint between export and runtime.

A bundle is a folder::

    manifest.json     this module's Manifest, as JSON (format name, format_version, checksums)
    backbone.onnx     token tensors -> features z            (float32 [batch, feature_size])
    head.onnx         z -> task logits + uncertainty-head logits (one output per head)
    tokenizer.json    a `tokenizers` tokenizer (truncation/padding are applied by the runtime
                      from the manifest's TokenizerSpec, not from this file)
    baselines.npz     optional: Mahalanobis statistics (numpy .npz, loaded with allow_pickle=False)
    golden.json       optional: a few texts with the outputs the exporter expects

Only stdlib and numpy are used here. Loading never unpickles and never registers custom-op
libraries. Every problem raises a :class:`BundleError` (or subclass) naming the file and the fix.

Score directions: every uncertainty score described by a bundle is **higher = more uncertain**.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
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
from uehead.scores import DEFAULT_LAMBDA, head_kind, head_params

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
#: Arrays of baselines.npz (float64): class_means [C, H], precision [H, H], global_mean [H],
#: global_precision [H, H] (see :mod:`uehead.distances`).
BASELINE_KEYS = ("class_means", "precision", "global_mean", "global_precision")
#: Keys every golden.json has (see :func:`golden_payload`).
GOLDEN_KEYS = ("texts", "label_ids", "probs", "softmax_response", "entropy")

ARCHITECTURES = ("bert", "roberta", "llama", "other")
POOLINGS = ("pooler", "first_token", "last_token")
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
    """An optional extra file (baselines.npz, golden.json)."""

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
    #: Reports: export validation diffs, int8 deltas, training summary.
    reports: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def files(self) -> dict[str, str]:
        """Every file of the bundle (manifest aside) with its expected sha256."""
        out = {
            self.tokenizer.file: self.tokenizer.sha256,
            self.backbone.file: self.backbone.sha256,
            self.head.file: self.head.sha256,
        }
        for extra in (self.baselines, self.golden):
            if extra is not None:
                out[extra.file] = extra.sha256
        return out

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


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
        writer = data.get("writer", {}).get("uehead", "a newer uehead")
        raise BundleVersionError(
            f"format_version {version} is newer than this runtime reads ({FORMAT_VERSION}); "
            f"it was written by uehead {writer}.", path=path,
            fix=f"upgrade the runtime (pip install -U 'uehead>={writer}') or re-export with this version.")
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
        baselines=None if data.get("baselines") is None else _build(FileSpec, data["baselines"], "baselines", path),
        golden=None if data.get("golden") is None else _build(FileSpec, data["golden"], "golden", path),
        reports=dict(data.get("reports") or {}),
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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"is not valid UTF-8 JSON ({exc}).", path=path,
                          fix="re-export the bundle with `uehead export`.") from exc
    return manifest_from_dict(data, path)


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
        baselines=fill(manifest.baselines),
        golden=fill(manifest.golden),
    )


def write_manifest(bundle_dir: str | os.PathLike, manifest: Manifest) -> Path:
    """Fill checksums from disk, check the result, and write manifest.json atomically."""
    root = Path(bundle_dir)
    manifest = with_checksums(root, manifest)
    path = root / MANIFEST_FILE
    manifest_from_dict(manifest.to_dict(), path)  # the same checks a reader runs
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------- golden.json
def golden_payload(texts, label_ids, probs, scores, *, source: str, tolerance: float) -> dict[str, Any]:
    """golden.json: a few texts and the outputs the exporter expects for each, one text per call.

    ``scores`` maps score names (:func:`uehead.scores.score_names`: "sr", "entropy", each head
    kind, and "md"/"rmd" when the bundle has baselines) to [N] arrays. On disk "sr" is stored as
    ``softmax_response``, the head kinds under ``heads`` and the distances under ``distances``.
    """
    import numpy as np

    def floats(x):
        return np.asarray(x, np.float64).tolist()

    out = {
        "texts": list(texts),
        "tolerance": float(tolerance),
        "source": source,
        "label_ids": [int(x) for x in label_ids],
        "probs": floats(probs),
        "softmax_response": floats(scores["sr"]),
        "entropy": floats(scores["entropy"]),
        "heads": {k: floats(v) for k, v in scores.items() if k not in ("sr", "entropy", "md", "rmd")},
    }
    distances = {k: floats(scores[k]) for k in ("md", "rmd") if k in scores}
    if distances:
        out["distances"] = distances
    return out


def read_golden(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check golden.json; ``heads`` and ``distances`` default to empty objects."""
    path = Path(path)
    fix = "re-export the bundle with `uehead export`."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"is not valid UTF-8 JSON ({exc}).", path=path, fix=fix) from exc
    if not isinstance(data, dict):
        raise BundleError("must be a JSON object.", path=path, fix=fix)
    missing = [k for k in GOLDEN_KEYS if k not in data]
    if missing:
        raise BundleError(f"lacks keys {missing}.", path=path, fix=fix)
    texts = data["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise BundleError("'texts' must be a list of strings.", path=path, fix=fix)
    tol = data.get("tolerance", 1e-4)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise BundleError(f"'tolerance' must be a number >= 0, got {tol!r}.", path=path, fix=fix)
    for key in ("heads", "distances"):
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise BundleError(f"'{key}' must be an object name -> list of numbers.", path=path, fix=fix)
        data[key] = value
    data["tolerance"] = float(tol)
    return data
