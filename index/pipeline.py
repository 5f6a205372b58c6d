"""The one index pipeline: vectors and ids -> plan -> build -> tune -> check -> map -> a staged version.

`latent-search index build` (index.build, from a collection) and the service's rebuild
(app.jobs, from the live catalog) both stage a version through `stage_version`; each then
publishes it its own way (directly, or under the live index's write lock via
`ImageIndex.hand_over`). The catalog file is the caller's: a fresh one or a copy of the live one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index.atlas import DEFAULT_MAP_SAMPLE, compute_map, save_map
from index.plan import DEFAULT_MEMORY_BUDGET, DEFAULT_RECALL_TARGET, IndexPlan, plan_index
from index.tuning import tune_index
from index.vector_store import BackendChoice, VectorStore
from index.vectors import build_store
from index.versions import MANIFEST_FILE, Manifest, version_name

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOptions:
    factory: str | None = None  # a FAISS factory string; None: index.plan chooses
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    target_recall: float = DEFAULT_RECALL_TARGET
    map_sample: int = DEFAULT_MAP_SAMPLE  # images on the collection's 2-D map (index.atlas); 0: no map
    backend: BackendChoice = field(default_factory=BackendChoice)  # where the vectors live (index.vectors)


def stage_version(
    staged: Path,
    vectors: np.ndarray,
    ids: np.ndarray,
    encoder: dict[str, Any],
    options: BuildOptions,
    **facts: Any,
) -> tuple[VectorStore, Manifest]:
    """Build, tune and check the vector store for (vectors, ids) in the backend `options`
    names, and write what the version needs, with its manifest, into the staging folder
    `staged`. `encoder` is model.embedding.runtime.manifest_entry of the encoder that made the vectors;
    `facts` are further Manifest fields (where the images came from). A failure discards
    the new store (a Milvus collection is dropped); publishing is the caller's."""
    started = time.perf_counter()
    dim = int(vectors.shape[1])
    plan = plan_index(max(len(vectors), 1), dim, options.memory_budget, options.factory)
    LOG.info("index type %s (%s), backend %s", plan.factory, plan.reason, options.backend.name)
    store = build_store(options.backend, staged, vectors, ids, plan)
    try:
        manifest = _finish(store, staged, vectors, ids, encoder, options, plan, started, facts)
    except BaseException:
        store.drop()
        raise
    return store, manifest


def _finish(
    store: VectorStore,
    staged: Path,
    vectors: np.ndarray,
    ids: np.ndarray,
    encoder: dict[str, Any],
    options: BuildOptions,
    plan: IndexPlan,
    started: float,
    facts: dict[str, Any],
) -> Manifest:
    build_seconds = time.perf_counter() - started
    tuning = tune_index(store, vectors, ids, options.target_recall)
    check_built(store, vectors, ids, exact=plan.factory.endswith("Flat"))
    store.save(staged)
    if options.map_sample > 0:
        collection_map = compute_map(vectors, ids, options.map_sample)
        save_map(staged, collection_map)
        facts["map"] = collection_map.meta()
    if "seconds" in facts:  # what the caller spent before (embedding), plus building and tuning
        before = facts["seconds"]
        facts["seconds"] = {
            **before,
            "index": round(build_seconds, 2),
            **({"map": round(facts["map"]["seconds"], 2)} if "map" in facts else {}),
            "total": round(sum(before.values()) + time.perf_counter() - started, 2),
        }
    manifest = Manifest(
        version=version_name(staged),
        encoder=encoder,
        dim=int(vectors.shape[1]),
        count=store.count,
        index_type=plan.factory,
        index_reason=plan.reason,
        vector_store=store.record(),
        **tuning,
        **facts,
    )
    (staged / MANIFEST_FILE).write_text(manifest.to_json())
    return manifest


def check_built(index: VectorStore, vectors: np.ndarray, ids: np.ndarray, exact: bool) -> None:
    """Before publishing: the index holds exactly the catalog's ids and, where it stores exact
    vectors (`exact`), a sample of them finds itself among its top 5 (unless at least five
    vectors tie with it exactly: pixel-identical images, which may come in any order)."""
    if index.count != len(ids):
        raise RuntimeError(f"new index holds {index.count} vectors for {len(ids)} catalog rows")
    picks = np.arange(0, len(ids), max(1, len(ids) // 20))[:20]
    if not exact or not len(picks):
        return
    queries = np.ascontiguousarray(vectors[picks], dtype=np.float32)
    scores, found = index.search(queries, min(5, len(ids)))
    own_scores = np.einsum("ij,ij->i", queries, queries)
    for me, hits, fifth, own in zip(ids[picks], found, scores[:, -1], own_scores, strict=True):
        if int(me) not in hits.tolist() and fifth < own - 1e-4:
            raise RuntimeError("a sample search of the new index did not find its own images")
