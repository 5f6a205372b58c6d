"""Read replicas (index.replica) follow the writer's writes and versions, on both backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.catalog import Catalog
from index.pipeline import BuildOptions, stage_version
from index.replica import catch_up, open_replica
from index.store import ReadReplicaError, load
from index.vector_store import BACKENDS, BackendChoice
from index.versions import CATALOG_FILE, publish, staging_dir
from tests.conftest import clustered_vectors
from tests.index.conftest import rows_for


def publish_vectors(root: Path, vectors: np.ndarray, backend: str) -> None:
    staged = staging_dir(root)
    with Catalog(staged / CATALOG_FILE) as catalog:
        ids = np.array([i for i, _ in catalog.add(rows_for(len(vectors)))], dtype=np.int64)
    options = BuildOptions(map_sample=0, backend=BackendChoice(backend))
    store, _ = stage_version(staged, vectors, ids, {"sha256": "e" * 64}, options)
    publish(root, staged)
    store.publish()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replica_sees_the_writers_adds_removes_and_new_versions(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "idx"
    publish_vectors(root, clustered_vectors(80, 16, 4, seed=1), backend)
    writer = load(root, writable=True)
    replica = open_replica(root)
    fresh = clustered_vectors(2, 16, 4, seed=2)
    added = [i for i, _ in writer.add(fresh, rows_for(2, offset=500))]
    assert replica.count in (80, 82)  # Milvus: the vectors are shared at once; FAISS: not before catch_up
    assert catch_up(replica)
    assert replica.count == 82 and replica.catalog.count() == 82
    _, ids = replica.search(fresh, 1)
    assert [int(i[0]) for i in ids] == added
    assert replica.rows(added)[added[0]].uri == "img/500.png"
    writer.remove([added[0]])
    assert catch_up(replica) and replica.catalog.count() == 81
    assert added[0] not in replica.search(fresh[:1], 81)[1][0].tolist()
    with pytest.raises(ReadReplicaError, match="read replica"):
        replica.add(fresh[:1], rows_for(1, offset=900))
    writer.commit(root)  # a new version: the replica is told to reopen, and the new one has everything
    assert not catch_up(replica)
    reopened = open_replica(root)
    assert reopened.version == writer.version and reopened.catalog.count() == 81
    scratch = replica.catalog.path.parent
    replica.close()
    assert not scratch.exists()  # the private catalog copy goes with it
