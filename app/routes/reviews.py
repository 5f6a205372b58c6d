"""Duplicate review: a decision on a group (keep all, or keep one copy), remembered by content
across syncs and rebuilds (index/reviews.py); listed for export; GET /duplicates shows it."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response

from app.deps import AdminDep, LiveDep, ReadyGuard
from app.offload import run_blocking
from app.schemas import DuplicateGroup, ReviewInfo, ReviewRequest, ReviewsResponse, Suggestion
from app.service import Live
from index.catalog import CatalogRow
from index.duplicates import Group
from index.reviews import Review, Reviews, review_of, suggest

router = APIRouter(tags=["collection"])


async def get_reviews(request: Request) -> Reviews:
    found: Reviews = request.app.state.reviews
    return found


ReviewsDep = Annotated[Reviews, Depends(get_reviews)]


def info(review: Review, live: Live) -> ReviewInfo:
    ids = {sha: row.id for sha in review.members if (row := live.index.catalog.by_sha256(sha)) is not None}
    return ReviewInfo(
        id=review.id,
        decision=review.decision,
        keep_id=ids.get(review.keep) if review.keep else None,
        ids=sorted(ids.values()),
        members_sha256=list(review.members),
        closeness=round(review.closeness, 6),
        decided_at=review.decided_at,
    )


def annotate(
    groups: list[Group], rows: dict[int, CatalogRow], reviews: list[Review]
) -> list[tuple[str, Review | None, list[int]]]:
    """(status, decision, ids it does not cover) of each group; `rows` holds its members' rows."""
    out = []
    for g in groups:
        scores = {rows[m.id].sha256: m.score for m in g.members if m.id in rows}
        state = review_of(scores, reviews)
        by_sha = {rows[m.id].sha256: m.id for m in g.members if m.id in rows}
        out.append((state.status, state.review, [by_sha[s] for s in state.unreviewed]))
    return out


def described(
    group: DuplicateGroup, members: list[CatalogRow], state: tuple[str, Review | None, list[int]], live: Live
) -> DuplicateGroup:
    """`group` with its review state and the copy suggested among `members` (its images' rows)."""
    status, review, unreviewed = state
    best = suggest(members, live.store.facts) if len(members) > 1 else None
    return group.model_copy(
        update={
            "status": status,
            "review": info(review, live) if review is not None else None,
            "unreviewed_ids": unreviewed,
            "suggested": Suggestion(id=best[0], reason=best[1]) if best else None,
        }
    )


@router.post("/duplicates/reviews", status_code=201, response_model=ReviewInfo, dependencies=[AdminDep, ReadyGuard],
             responses={404: {"description": "An id is not in the index."},
                        422: {"description": "keep_one without keep_id in ids, or keep_all with one."}})  # fmt: skip
async def decide(live: LiveDep, reviews: ReviewsDep, body: ReviewRequest) -> ReviewInfo:
    """Record a decision on a group: `keep_all` or `keep_one` (with `keep_id`). It is stored by
    the images' content, so it survives renames, syncs and rebuilds, and it replaces earlier
    decisions on any of these images."""
    ids = sorted(set(body.ids))
    rows = live.index.rows([i for i in ids if 0 <= i < 2**63])  # ids are 64-bit: others are unknown
    missing = [i for i in ids if i not in rows]
    if missing:
        raise HTTPException(404, f"no image with id {missing[0]} in the index")
    if len(ids) < 2:
        raise HTTPException(422, "a decision is about a group: give at least two different images")
    if (body.decision == "keep_one") != (body.keep_id is not None) or (
        body.keep_id is not None and body.keep_id not in ids
    ):
        raise HTTPException(422, "keep_one needs keep_id, one of ids; keep_all takes none")
    vectors = await run_blocking(live.index.vectors, np.array(ids, dtype=np.int64))
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1.0)
    closeness = float(sims.max(axis=1).min())  # the least close member's best link
    keep = rows[body.keep_id].sha256 if body.keep_id is not None else None
    review = reviews.record(body.decision, [rows[i].sha256 for i in ids], closeness, keep)
    return info(review, live)


@router.get("/duplicates/reviews", response_model=ReviewsResponse)
async def list_reviews(live: LiveDep, reviews: ReviewsDep) -> ReviewsResponse:
    """Every decision, with the images' current ids: the export of a duplicate review."""
    return ReviewsResponse(reviews=[info(r, live) for r in reviews.all()])


@router.delete("/duplicates/reviews/{review_id}", status_code=204, dependencies=[AdminDep],
               responses={404: {"description": "Unknown decision."}})  # fmt: skip
async def forget(reviews: ReviewsDep, review_id: Annotated[int, Path(ge=1, le=2**62, examples=[1])]) -> Response:
    """Take a decision back: its group shows as new again."""
    if not reviews.delete(review_id):
        raise HTTPException(404, f"no decision {review_id}")
    return Response(status_code=204)
