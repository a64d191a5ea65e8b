"""The manifest's own checksum: the sha256 of ``manifest.json``, kept apart from it.

The manifest records every other file's sha256, so the digest of ``manifest.json`` alone identifies
the whole bundle: equal digests, equal bundles. It cannot be stored inside the manifest, so it lives
outside it:

* as a digest the deployer pins from a trusted place (a deployment config, a release note) and
  passes to ``load(bundle, expected_sha256=...)``, ``verify(bundle, expected_sha256=...)`` or
  ``uehead verify BUNDLE --expected-sha256 HEX|FILE`` (FILE: a checksum file kept elsewhere);
* in the optional file :data:`CHECKSUM_FILE` next to the manifest, in ``sha256sum`` format
  (``<hex digest>  manifest.json``; ``sha256sum manifest.json > manifest.json.sha256`` writes it,
  and so does :func:`write_checksum_file`). ``uehead verify`` checks it when it is present, which
  catches an edited or corrupted manifest. It does not protect against tampering: whoever can
  rewrite the manifest can rewrite the file next to it too; only a pinned digest (or a signature,
  see the README) does.

Stdlib only. Every failure is a :class:`~uehead.errors.ChecksumError` (or ``BundleError`` for a
malformed checksum file) naming the file and the fix.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from uehead.bundle import MANIFEST_FILE
from uehead.errors import BundleError, ChecksumError

__all__ = ["CHECKSUM_FILE", "manifest_sha256", "read_checksum_file", "write_checksum_file", "check_manifest_sha256"]

#: The optional checksum file of a bundle, next to its manifest.
CHECKSUM_FILE = MANIFEST_FILE + ".sha256"
_HEX = re.compile(r"[0-9a-f]{64}")


def manifest_sha256(bundle_dir: str | os.PathLike) -> str:
    """The sha256 (hex) of the bundle's ``manifest.json`` bytes."""
    return hashlib.sha256((Path(bundle_dir) / MANIFEST_FILE).read_bytes()).hexdigest()


def read_checksum_file(path: str | os.PathLike) -> str:
    """The digest in a ``sha256sum``-style file (its first word; ``*`` binary markers allowed)."""
    path = Path(path)
    fix = f"write it with: sha256sum {MANIFEST_FILE} > {CHECKSUM_FILE} (in the bundle folder)."
    try:
        words = path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot be read ({exc}).", path=path, fix=fix) from None
    digest = words[0].lower() if words else ""
    if not _HEX.fullmatch(digest):
        raise BundleError("does not start with a sha256 hex digest (64 hex digits).", path=path, fix=fix)
    return digest


def write_checksum_file(bundle_dir: str | os.PathLike) -> Path:
    """Write :data:`CHECKSUM_FILE` for the bundle's current manifest; return its path."""
    root = Path(bundle_dir)
    path = root / CHECKSUM_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{manifest_sha256(root)}  {MANIFEST_FILE}\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def check_manifest_sha256(bundle_dir: str | os.PathLike, expected: str | None = None, *,
                          checksum_file: bool = False) -> str | None:
    """Check ``manifest.json`` against ``expected`` (a hex digest) and, with ``checksum_file``,
    against :data:`CHECKSUM_FILE` when the bundle has one; return the manifest's sha256 (None when
    there is no manifest: the caller's manifest reader reports that).

    Raises:
        ValueError: ``expected`` is not a sha256 hex digest.
        ChecksumError: a digest differs, naming ``manifest.json``.
    """
    root = Path(bundle_dir)
    if expected is not None and not (isinstance(expected, str) and _HEX.fullmatch(expected.strip().lower())):
        raise ValueError(f"expected_sha256={expected!r} is not a sha256 hex digest (64 hex digits).")
    manifest = root / MANIFEST_FILE
    if not manifest.is_file():
        return None
    actual = manifest_sha256(root)
    pinned = [(expected.strip().lower(), "the expected sha256")] if expected is not None else []
    if checksum_file and (root / CHECKSUM_FILE).is_file():
        pinned.append((read_checksum_file(root / CHECKSUM_FILE), CHECKSUM_FILE))
    for digest, source in pinned:
        if digest != actual:
            raise ChecksumError(f"sha256 {actual[:12]}... differs from {source} {digest[:12]}...: the manifest "
                                "was edited or replaced since that digest was taken.", path=manifest,
                                fix="restore the original bundle (or re-export it and take its new digest).")
    return actual
