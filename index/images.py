"""Content-addressed image store: bytes live at ROOT/<sha[:2]>/<sha>, named only by their hash.

File names never come from user input (no path traversal), a file is written once
(temp file + fsync + rename) and never modified, so every index version can share it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from model.common.atomic import write_atomic

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


# PNG, BMP, TIFF (both byte orders), GIF: formats that keep every pixel (WebP may or may not).
LOSSLESS_MAGIC = (b"\x89PNG", b"BM", b"II*\x00", b"MM\x00*", b"GIF8")


class ImageStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store bytes durably; returns their sha256. Storing known bytes is a no-op."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path_for(sha)
        if target.exists():
            return sha
        write_atomic(target, data)
        return sha

    def get(self, sha256: str) -> bytes | None:
        path = self.path_for(sha256)
        return path.read_bytes() if path.exists() else None

    def facts(self, sha256: str) -> tuple[int, bool] | None:
        """(stored bytes, lossless format) of an image, None when it is not stored."""
        path = self.path_for(sha256)
        try:
            with path.open("rb") as fh:
                head = fh.read(8)
            return path.stat().st_size, head.startswith(LOSSLESS_MAGIC)
        except FileNotFoundError:
            return None

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)
