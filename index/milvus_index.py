"""The Milvus backend: index.vector_store.VectorStore over a Milvus collection (pymilvus).

The URI is a Milvus Lite file (`./milvus.db`, embedded, one process per file: tests and
small installs) or a server (`http://host:19530`: standalone or cluster, shared by several
API replicas). Each index version's vectors are one collection, `<alias>__<version>`; the
alias (`ls_<token>`, one per index directory) names the current one. A rebuild fills a new
collection, switches the alias once it is published, and drops the old collection only after
the switch (after a grace period, so searches already on their way finish); a failed build
drops its own collection and leaves the alias alone.

The FAISS plan (index.plan) maps onto Milvus index types: Flat -> FLAT, HNSW -> HNSW,
IVF...,Flat -> IVF_FLAT, IVF...,PQ -> IVF_PQ; the search parameter (ef / nprobe) is tuned
through Milvus itself, so an engine that ignores it (Milvus Lite) shows it in the recall.

Connections (one client per URI, errors that say what to start) are index.milvus_client's. The
rest stays one module (about 320 lines): every method works on the same collection, alias and
client, and the build, publish, retire and drop steps are one life cycle.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.faiss_index import EF_GRID, NPROBE_GRID
from index.milvus_client import LITE_IN_INDEX, absolute, connect
from index.plan import IndexPlan
from index.vector_store import BackendUnavailableError
from index.versions import MANIFEST_FILE, POINTER, Manifest

LOG = logging.getLogger(__name__)

INSERT_BATCH = 5_000  # rows an upsert sends (512-d float32: 10 MB, under gRPC's 64 MB message limit)
FILTER_IDS_MAX = 20_000  # allowed ids written into an `id in [...]` filter; more: oversample and filter here
TOPK_MAX = 16_384  # Milvus's limit on k
INDEX_WAIT_S = 1800.0  # longest a build waits for Milvus to index a new collection
DROP_GRACE_S = 30.0  # a retired collection is dropped this long after the alias moved off it
# Searches: "Session" sees this process's acknowledged writes at once and other processes' within
# Milvus's time tick (about a second); "Strong" sees every write at once but waits for the next
# time tick on every search (measured on a Milvus 2.3 server here: 3.6 q/s against 405 q/s).
CONSISTENCY = "Session"


def milvus_index(plan: IndexPlan) -> tuple[str, dict[str, int], str | None]:
    """(Milvus index type, build params, search parameter name) for a FAISS factory string."""
    factory = plan.factory.replace(" ", "")
    if factory == "Flat":
        return "FLAT", {}, None
    if m := re.fullmatch(r"HNSW(\d+)(,Flat)?", factory):
        return "HNSW", {"M": int(m.group(1)), "efConstruction": 200}, "ef"
    if m := re.fullmatch(r"IVF(\d+)(_HNSW\d+)?,Flat", factory):
        return "IVF_FLAT", {"nlist": int(m.group(1))}, "nprobe"
    if m := re.fullmatch(r"IVF(\d+)(_HNSW\d+)?,PQ(\d+)(x8)?", factory):
        return "IVF_PQ", {"nlist": int(m.group(1)), "m": int(m.group(3)), "nbits": 8}, "nprobe"
    raise ValueError(
        f"index type {plan.factory!r} has no Milvus counterpart here: use Flat, HNSW<M>, IVF<n>,Flat or IVF<n>,PQ<m>"
    )


def _alias_for(root: Path) -> str:
    """The index directory's alias: the one its current version records, else a new one."""
    pointer = root / POINTER
    if pointer.exists():
        manifest = root / "versions" / pointer.read_text().strip() / MANIFEST_FILE
        if manifest.exists():
            record = Manifest.from_dict(json.loads(manifest.read_text())).vector_store or {}
            if record.get("backend") == "milvus" and record.get("alias"):
                return str(record["alias"])
    return f"ls_{secrets.token_hex(4)}"


class MilvusStore:
    """Vectors of one index version in one Milvus collection."""

    shared = True

    def __init__(self, client: Any, uri: str, collection: str, alias: str, dim: int, kind: dict[str, Any]) -> None:
        self.client, self.uri, self.collection, self.alias, self._dim = client, uri, collection, alias, dim
        self.kind = kind  # {"type", "params", "search_param"}
        self.inside = False  # a Milvus Lite folder inside the index directory
        self.search_params: dict[str, int] = {}
        self.consistency = CONSISTENCY

    # Making and finding collections

    @classmethod
    def build(
        cls,
        uri: str | None,
        staged: Path,
        vectors: np.ndarray,
        ids: np.ndarray,
        plan: IndexPlan,
        consistency: str = CONSISTENCY,
    ) -> MilvusStore:
        from pymilvus import DataType, MilvusClient

        root = staged.parent.parent  # ROOT/versions/.tmp-<version>
        inside = uri is None  # a Lite file in the index directory travels with it: recorded relative
        uri = absolute(uri) if uri else str((root / LITE_IN_INDEX).resolve())
        client = connect(uri)
        alias = _alias_for(root)
        collection = f"{alias}__{staged.name.removeprefix('.tmp-').replace('-', '_')}"
        index_type, params, search_param = milvus_index(plan)
        dim = int(vectors.shape[1])
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index_params = client.prepare_index_params()
        index_params.add_index(field_name="vector", index_type=index_type, metric_type="IP", params=params)
        client.create_collection(collection, schema=schema, index_params=index_params, consistency_level="Strong")
        kind = {"type": index_type, "params": params, "search_param": search_param}
        store = cls(client, uri, collection, alias, dim, kind)
        store.consistency = consistency
        store.inside, store.consistency = inside, consistency
        try:
            store.add(vectors, ids)
            client.flush(collection)
            store._wait_indexed(len(ids))  # tuning must measure the index, not a brute-force scan of new rows
        except BaseException:
            store.drop()
            raise
        LOG.info("milvus collection %s at %s: %d vectors, %s %s", collection, uri, len(ids), index_type, params)
        return store

    @classmethod
    def open(
        cls, root: Path, record: dict[str, Any], uri: str | None, writable: bool, consistency: str = CONSISTENCY
    ) -> MilvusStore:
        inside = uri is None and record.get("uri") == LITE_IN_INDEX
        uri = absolute(uri) if uri else str(record.get("uri") or "")
        if not uri:
            raise BackendUnavailableError("the index records no Milvus URI: set LATENT_SEARCH_MILVUS_URI")
        if inside:
            uri = str((root / LITE_IN_INDEX).resolve())
        client = connect(uri)
        collection, alias = str(record["collection"]), str(record["alias"])
        if not client.has_collection(collection):
            raise BackendUnavailableError(
                f"Milvus at {uri!r} has no collection {collection!r} (the index's vectors): was it dropped, or is "
                "this another Milvus? Rebuild with `latent-search index build --backend milvus`"
            )
        client.load_collection(collection)  # a collection reopened by a new process starts released
        store = cls(client, uri, collection, alias, int(record["dim"]), dict(record.get("index", {})))
        store.inside, store.consistency = inside, consistency
        if writable:
            store._drop_orphans()
        return store

    def _wait_indexed(self, rows: int) -> None:
        """Milvus builds indexes in the background and searches rows not yet indexed by brute
        force; wait until every row is indexed, then reload so that searches use the index."""
        if self.kind.get("type") == "FLAT":
            return
        deadline = time.monotonic() + INDEX_WAIT_S
        while True:
            state = self.client.describe_index(self.collection, "vector")
            done = int(state.get("indexed_rows", 0)) >= rows and int(state.get("pending_index_rows", 0)) == 0
            if done or str(state.get("state")) == "Failed":
                break
            if time.monotonic() > deadline:
                LOG.warning("Milvus index of %s not finished after %.0f s: %s", self.collection, INDEX_WAIT_S, state)
                break
            time.sleep(0.2)
        if str(state.get("state")) == "Failed":
            raise RuntimeError(f"Milvus could not build the index of {self.collection}: {state}")
        self.client.release_collection(self.collection)
        self.client.load_collection(self.collection)

    def _drop_orphans(self) -> None:
        """Collections of this index directory that no version uses any more (a crash between a
        rebuild's build and publish, or before a retired collection's drop)."""
        current = self._alias_target()
        for name in self.client.list_collections():
            if name.startswith(f"{self.alias}__") and name not in {self.collection, current}:
                LOG.warning("dropping Milvus collection %s, left by an earlier rebuild", name)
                self.client.drop_collection(name)

    def _alias_target(self) -> str | None:
        if self.alias not in self.client.list_aliases().get("aliases", []):
            return None  # not published yet (asked first: pymilvus logs a failed describe as an error)
        return str(self.client.describe_alias(self.alias)["collection_name"])

    # VectorStore

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def count(self) -> int:
        rows = self.client.query(
            self.collection, filter="", output_fields=["count(*)"], consistency_level=self.consistency
        )
        return int(rows[0]["count(*)"])

    def _search(self, queries: np.ndarray, k: int, where: str = "") -> tuple[np.ndarray, np.ndarray]:
        k = min(k, TOPK_MAX)
        params = {"metric_type": "IP", "params": dict(self.search_params)}
        hits = self.client.search(
            self.collection,
            data=queries,
            limit=k,
            filter=where,
            search_params=params,
            output_fields=["id"],
            consistency_level=self.consistency,
        )
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, found in enumerate(hits):
            for col, hit in enumerate(found[:k]):
                scores[row, col], ids[row, col] = hit["distance"], hit["id"]
        return scores, ids

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._search(queries, k)

    def search_among(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A Milvus filter for up to FILTER_IDS_MAX allowed ids; beyond that (a common filter),
        k / share candidates filtered here, rows left short are answered exactly by the caller."""
        if len(allowed) <= FILTER_IDS_MAX:
            return self._search(queries, k, f"id in [{','.join(str(int(i)) for i in allowed)}]")
        share = len(allowed) / max(self.count, 1)
        scores, ids = self._search(queries, int(min(TOPK_MAX, np.ceil(2 * k / share))))
        keep = np.isin(ids, allowed)
        out_s = np.full((len(queries), k), -np.inf, np.float32)
        out_i = np.full((len(queries), k), -1, np.int64)
        for row in range(len(queries)):
            s, i = scores[row][keep[row]][:k], ids[row][keep[row]][:k]
            out_s[row, : len(s)], out_i[row, : len(i)] = s, i
        return out_s, out_i

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Upsert: an id already present gets the new vector (Milvus does not refuse duplicate keys)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        for start in range(0, len(ids), INSERT_BATCH):
            rows = [
                {"id": int(i), "vector": v}
                for i, v in zip(ids[start : start + INSERT_BATCH], vectors[start : start + INSERT_BATCH], strict=True)
            ]
            self.client.upsert(self.collection, rows)

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.client.delete(self.collection, ids=[int(i) for i in ids])

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        want = [int(i) for i in ids]
        got: dict[int, Any] = {}
        for start in range(0, len(want), INSERT_BATCH):  # bounded replies (gRPC's 64 MB message limit)
            part = self.client.get(self.collection, ids=want[start : start + INSERT_BATCH], output_fields=["vector"])
            got.update((int(r["id"]), r["vector"]) for r in part)
        missing = [i for i in want if i not in got]
        if missing:
            raise KeyError(f"ids not in the Milvus collection {self.collection}: {missing[:5]}")
        return np.asarray([got[i] for i in want], dtype=np.float32).reshape(len(want), self._dim)

    def reconcile(self, ids: list[int]) -> int:
        if self.count == len(ids):
            return 0
        extra: list[int] = []
        known = set(ids)
        iterator = self.client.query_iterator(self.collection, batch_size=10_000, output_fields=["id"])
        while batch := iterator.next():
            extra.extend(int(r["id"]) for r in batch if int(r["id"]) not in known)
        iterator.close()
        self.remove(np.asarray(extra, dtype=np.int64))
        return len(extra)

    def param_name(self) -> str | None:
        name = self.kind.get("search_param")
        return {"ef": "efSearch", "nprobe": "nprobe"}.get(name) if name else None

    def param_grid(self) -> tuple[int, ...]:
        if self.kind.get("search_param") == "nprobe":
            nlist = int(self.kind["params"]["nlist"])
            return (*(v for v in NPROBE_GRID if v < nlist), nlist)
        return EF_GRID

    def set_param(self, value: int) -> None:
        name = self.kind.get("search_param")
        if name:
            self.search_params = {str(name): int(value)}

    def range_searchable(self) -> faiss.Index | None:
        return None  # Milvus's range search is bounded by k: the duplicate finder uses an exact copy

    def record(self) -> dict[str, Any]:
        return {
            "backend": "milvus",
            "uri": LITE_IN_INDEX if self.inside else self.uri,
            "collection": self.collection,
            "alias": self.alias,
            "dim": self._dim,
            "index": self.kind,
        }

    def save(self, directory: Path) -> None:
        self.client.flush(self.collection)  # the version folder holds no vectors: Milvus does

    def publish(self) -> None:
        """Point the alias at this collection (created on first publish)."""
        if self._alias_target() is None:
            self.client.create_alias(self.collection, self.alias)
        else:
            self.client.alter_alias(self.collection, self.alias)

    def retire(self, successor: object) -> None:
        if isinstance(successor, MilvusStore) and successor.collection == self.collection:
            return
        timer = threading.Timer(DROP_GRACE_S, self._drop_quietly)
        timer.daemon = True  # a process that exits first leaves it to the next writable open
        timer.start()

    def _drop_quietly(self) -> None:
        try:
            if self._alias_target() != self.collection:
                self.client.drop_collection(self.collection)
                LOG.info("dropped retired Milvus collection %s", self.collection)
        except Exception as exc:  # the next writable open drops it instead
            LOG.warning("could not drop retired Milvus collection %s: %s", self.collection, exc)

    def drop(self) -> None:
        if self._alias_target() != self.collection:
            self.client.drop_collection(self.collection)

    def close(self) -> None:
        pass  # the client is shared by every store on its URI
