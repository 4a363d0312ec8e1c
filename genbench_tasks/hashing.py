"""Content hashing: the one helper for cache keys, content ids and file digests (sha256 throughout).

``content_key(*parts)`` hashes its parts -- bytes as they are, ``str`` as UTF-8, anything else as canonical
JSON (sorted keys, ``str()`` for non-JSON values) -- joined by a unit separator, and truncates the hex digest
to ``KEY_LENGTH`` (``length=None``: the full sha256; one bytes part then hashes to exactly its sha256).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

KEY_LENGTH = 16  # hex digits of a cache key or content id (64 bits)
_SEP = b"\x1f"


def _encode(part: object) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode()
    return json.dumps(part, sort_keys=True, default=str).encode()


def content_key(*parts: object, length: int | None = KEY_LENGTH) -> str:
    """Hex sha256 of the parts (module docstring), truncated to ``length`` hex digits."""
    return hashlib.sha256(_SEP.join(_encode(p) for p in parts)).hexdigest()[:length]


def file_sha256(path: str | Path) -> str:
    """Full hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
