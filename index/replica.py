"""Read replicas: more processes serving searches over the index one writer keeps.

A replica opens the writer's current version with a private copy of its catalog and follows
the writer's journal (index.journal) by byte offset: each `catch_up` applies the entries
appended since the last one to the catalog and, where the vectors are the process's own
(FAISS), to the vectors too; with Milvus the writer has already put them in the shared
collection, so the replica only learns the rows. When the writer publishes a new version (a
rebuild or a commit), `catch_up` says so and the caller opens the new one.

What is shared, and the limit: the index directory (versions, journal, image store) is read
from the filesystem, so replicas run on the writer's machine or on a shared volume that
gives them a consistent view of appended files (NFS with close-to-open consistency does);
with Milvus the vectors are not copied per replica. Writes and rebuilds go to the one writer.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from index.catalog import Catalog
from index.journal import tail
from index.store import EncoderMismatchError, ImageIndex
from index.vector_store import StoreSettings
from index.vectors import open_store
from index.versions import CATALOG_FILE, MANIFEST_FILE, Manifest, current_version, journal_path

LOG = logging.getLogger(__name__)


def open_replica(
    root: str | Path, encoder_checksum: str | None = None, store_settings: StoreSettings | None = None
) -> ImageIndex:
    """Open the writer's current version of `root` as a read replica, caught up with its journal."""
    root = Path(root)
    version = current_version(root)
    manifest = Manifest.from_dict(json.loads((version / MANIFEST_FILE).read_text()))
    if encoder_checksum is not None and manifest.encoder_sha256 != encoder_checksum:
        raise EncoderMismatchError(
            f"index {str(root)!r} was built with encoder sha256 {str(manifest.encoder_sha256)[:12]}..., not "
            f"{encoder_checksum[:12]}...: serve the encoder the writer serves"
        )
    backend = open_store(version, manifest.vector_store, writable=False, settings=store_settings, replica=True)
    work = Path(tempfile.mkdtemp(prefix="latent-search-replica-"))  # outside ROOT: the writer cleans its own
    shutil.copy2(version / CATALOG_FILE, work / CATALOG_FILE)
    index = ImageIndex(backend, Catalog(work / CATALOG_FILE), manifest, version)
    index.replica_of, index.store_settings = root, store_settings
    catch_up(index)
    return index


def catch_up(index: ImageIndex) -> bool:
    """Apply the writer's journal entries written since the last call. False when the writer
    has published another version since this one was opened: open that one instead."""
    root = index.replica_of
    if root is None:
        raise ValueError("catch_up needs an index opened by open_replica")
    if current_version(root).name != index.version:
        return False
    entries, offset = tail(journal_path(root, index.version), index.followed)
    if entries:
        with index.lock.write():
            index.replay(entries, vectors=not index.backend.shared)
            index.generation += 1
            index.followed = offset
        LOG.debug("replica caught up %d journal entries of %s", len(entries), index.version)
    return True
