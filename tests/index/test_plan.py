"""The index type chosen for a collection size and memory budget (index.plan)."""

from __future__ import annotations

from index.plan import plan_index


def test_plan_follows_size_and_budget() -> None:
    assert plan_index(10_000, 512, 2**30).factory == "Flat"
    assert plan_index(1_000_000, 512, 4 * 2**30).factory.endswith(",Flat")
    assert "PQ" in plan_index(1_000_000, 512, 256 * 2**20).factory
    assert plan_index(10, 4, 1, factory="HNSW32").factory == "HNSW32"
