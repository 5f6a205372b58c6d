"""Index versions on disk: staging, publishing, the CURRENT pointer, the manifest.

Layout of an index directory:
    ROOT/CURRENT                  name of the live version (replaced atomically)
    ROOT/versions/<version>/      index.faiss, catalog.sqlite, manifest.json
    ROOT/versions/.tmp-<version>  a version being built; ignored and cleaned up on load
    ROOT/journal/<version>.jsonl  writes made on top of a version (index.journal)

A version is never edited once published (build offline, swap atomically); a crash while
building leaves CURRENT pointing at the previous, complete version.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.common.atomic import fsync_dir, fsync_tree, write_atomic

LOG = logging.getLogger(__name__)

INDEX_FILE, CATALOG_FILE, MANIFEST_FILE, POINTER = "index.faiss", "catalog.sqlite", "manifest.json", "CURRENT"
TMP_PREFIX = ".tmp-"
MANIFEST_FORMAT = "latent-search-index/1"


class IndexNotFoundError(FileNotFoundError):
    pass


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Manifest:
    """What a version's manifest.json says. Keys written as None are left out of the file."""

    version: str
    encoder: dict[str, Any]  # model.embedding.runtime.manifest_entry: path, sha256, config
    dim: int
    count: int
    index_type: str
    index_reason: str = ""
    search_params: dict[str, int] = field(default_factory=dict)
    recall_at_10: float | None = None
    recall_target: float | None = None
    tuning_queries: int | None = None
    built_at: str = field(default_factory=now_iso)
    format: str = MANIFEST_FORMAT
    metric: str = "inner_product (cosine on L2-normalised vectors)"
    # Where the images came from: a collection build ...
    data: str | None = None
    images_seen: int | None = None
    skipped_unreadable: int | None = None
    duplicates: int | None = None
    seconds: dict[str, float] | None = None
    vector_store: dict[str, Any] | None = None  # index.vectors: backend and where (None: the FAISS file)
    map: dict[str, Any] | None = None  # index.atlas: how the 2-D map was made, the space's spread
    # ... or a rebuild by the service, or a commit of its journalled writes.
    rebuilt_by_job: str | None = None
    committed_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    @property
    def encoder_sha256(self) -> str | None:
        sha = self.encoder.get("sha256")
        return str(sha) if sha else None


def new_version_name() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def staging_dir(root: str | Path) -> Path:
    """A fresh temporary version folder beside the published ones."""
    versions = Path(root) / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    tmp = versions / f"{TMP_PREFIX}{new_version_name()}"
    tmp.mkdir()
    return tmp


def version_name(staged: Path) -> str:
    """The name a staged folder is published under."""
    return staged.name.removeprefix(TMP_PREFIX)


def publish(root: str | Path, staged: Path) -> str:
    """fsync the staged version, rename it into place, then switch CURRENT to it."""
    root = Path(root)
    name = version_name(staged)
    fsync_tree(staged)
    staged.rename(staged.parent / name)
    fsync_dir(staged.parent)
    write_atomic(root / POINTER, name + "\n", durable_rename=True)
    LOG.info("published index version %s in %s", name, root)
    return name


def current_version(root: str | Path) -> Path:
    root = Path(root)
    pointer = root / POINTER
    if not pointer.exists():
        raise IndexNotFoundError(
            f"no index at {str(root)!r} (no {POINTER} file); build one with `latent-search index build`"
        )
    version = root / "versions" / pointer.read_text().strip()
    if not (version / MANIFEST_FILE).exists():
        raise IndexNotFoundError(f"{str(root)!r} points at {version.name!r}, which is incomplete or missing")
    return version


def clean_staging(root: str | Path) -> int:
    """Remove half-written versions left by a crash. Returns how many were removed."""
    versions = Path(root) / "versions"
    removed = 0
    if versions.is_dir():
        for stale in versions.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
            removed += 1
    if removed:
        LOG.warning("removed %d half-written index version(s) from %s", removed, root)
    return removed


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The live version's manifest.json as it is on disk."""
    manifest: dict[str, Any] = json.loads((current_version(root) / MANIFEST_FILE).read_text())
    return manifest


def journal_path(root: str | Path, version: str) -> Path:
    return Path(root) / "journal" / f"{version}.jsonl"
