"""The collection as a whole: browse the catalog, its labels, its near-duplicate groups, its map."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from app.collection import DuplicateCache
from app.deps import FilterDep, LiveDep
from app.offload import run_blocking
from app.routes.reviews import annotate, described
from app.schemas import (
    ERROR_RESPONSES,
    BrowseResponse,
    CatalogImage,
    DuplicateGroup,
    DuplicateMember,
    DuplicatesResponse,
    LabelCount,
    LabelsResponse,
    MapPoint,
    MapResponse,
)
from index.duplicates import TooManyPairsError

router = APIRouter(tags=["collection"])

NOT_READY: dict[int | str, dict[str, object]] = {503: ERROR_RESPONSES[503]}
Cursor = Annotated[
    int, Query(ge=0, le=2**63 - 1, description="Where the previous page ended (its next_cursor).", examples=[0])
]


@router.get("/images", response_model=BrowseResponse, responses=NOT_READY)
async def browse(
    live: LiveDep,
    where: FilterDep,
    cursor: Cursor = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="Images per page.", examples=[50])] = 50,
) -> BrowseResponse:
    """List the catalog in id order, a page at a time, optionally filtered by label or uri prefix."""
    rows = await run_blocking(live.index.catalog.page, where, cursor, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return BrowseResponse(
        images=[CatalogImage(id=r.id, uri=r.uri, label=r.label, width=r.width, height=r.height, added_at=r.added_at)
                for r in rows],
        next_cursor=rows[-1].id if more else None,
        index_version=live.index.version,
    )  # fmt: skip


@router.get("/labels", response_model=LabelsResponse, responses=NOT_READY)
async def labels(live: LiveDep) -> LabelsResponse:
    """Every label in the catalog with its image count (for filters)."""
    counts = await run_blocking(live.index.catalog.labels)
    return LabelsResponse(labels=[LabelCount(label=k, count=n) for k, n in counts], index_version=live.index.version)


@router.get(
    "/duplicates",
    response_model=DuplicatesResponse,
    responses={422: {"description": "Bad parameters, or a threshold so low that it joins too many pairs."},
               409: {"description": "No threshold given and no stored images to measure one with."},
               **NOT_READY},
)  # fmt: skip
async def duplicates(
    live: LiveDep,
    request: Request,
    threshold: Annotated[
        float | None,
        Query(
            ge=0.5,
            le=1.0,
            description="Cosine at or above which two images are near duplicates; "
            "default: measured for this encoder and collection (see `calibration` in the answer).",
            examples=[0.98],
        ),
    ] = None,
    cursor: Cursor = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Groups per page.", examples=[20])] = 20,
    reviewed: Annotated[
        bool,
        Query(description="Also list the groups a decision covers (POST /duplicates/reviews).", examples=[False]),
    ] = True,
    images_per_group: Annotated[
        int,
        Query(
            ge=1, le=1000, description="Images listed per group, best connected first (size counts all).", examples=[24]
        ),
    ] = 50,
) -> DuplicatesResponse:
    """Groups of near-duplicate images (connected by cosine >= threshold) and of byte-identical
    files, largest first. The first request for a threshold searches the whole index (seconds at
    60,000 images); further pages and repeats come from a cache until the index changes."""
    cache: DuplicateCache = request.app.state.duplicates
    calibration = None
    if threshold is not None:
        chosen = threshold
    else:
        try:
            calibration = await cache.calibration(live)
        except ValueError as exc:  # no stored image bytes to edit into copies
            raise HTTPException(409, f"{exc}; give a threshold") from exc
        chosen = calibration.threshold
    try:
        report, cached = await cache.get(live, chosen, calibration)
    except TooManyPairsError as exc:
        raise HTTPException(422, str(exc)) from exc
    decisions = request.app.state.reviews.all()
    if reviewed:  # every group is listed: only the page's need their rows and states
        shown = report.groups
        page = shown[cursor : cursor + limit]
        rows = live.index.rows([m.id for g in page for m in g.members])
        states = annotate(page, rows, decisions)
    else:  # reviewed groups are left out before paging: every group's state is needed
        rows = live.index.rows([m.id for g in report.groups for m in g.members])
        kept = [(g, st) for g, st in zip(report.groups, annotate(report.groups, rows, decisions), strict=True)
                if st[0] != "reviewed"]  # fmt: skip
        shown = [g for g, _ in kept]
        page = shown[cursor : cursor + limit]
        states = [st for _, st in kept[cursor : cursor + limit]]
    groups = [
        described(
            DuplicateGroup(
                size=g.size,
                exact_only=g.exact_only,
                images=[
                    DuplicateMember(
                        id=m.id, uri=row.uri, label=row.label, score=round(m.score, 6), copies=list(m.copies)
                    )
                    for m in g.members[:images_per_group]
                    if (row := rows.get(m.id)) is not None
                ],
            ),
            [rows[m.id] for m in g.members if m.id in rows],
            state,
            live,
        )
        for g, state in zip(page, states, strict=True)
    ]
    end = cursor + limit
    return DuplicatesResponse(
        threshold=chosen,
        groups=groups,
        total_groups=len(shown),
        images_searched=report.images,
        seconds=0.0 if cached else round(report.seconds, 3),
        next_cursor=end if end < len(shown) else None,
        calibration=dataclasses.asdict(calibration) if calibration is not None else None,
        index_version=live.index.version,
    )


@router.get(
    "/map",
    response_model=MapResponse,
    responses={404: {"description": "This index version has no map (built before maps, or with --map-sample 0)."},
               **NOT_READY},
)  # fmt: skip
async def collection_map(
    live: LiveDep,
    cursor: Cursor = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Points per page.", examples=[5000])] = 5_000,
) -> MapResponse:
    """2-D coordinates of the collection's images (computed at index build), a page at a time."""
    found = await run_blocking(lambda: live.index.map)
    if found is None:
        raise HTTPException(404, "this index version has no map; rebuild it (POST /index/rebuild) to make one")
    ids, xy = found.ids[cursor : cursor + limit], found.xy[cursor : cursor + limit]
    rows = live.index.rows([int(i) for i in ids])
    points = [
        MapPoint(id=int(i), x=float(p[0]), y=float(p[1]), label=row.label)
        for i, p in zip(ids, xy, strict=True)
        if (row := rows.get(int(i))) is not None  # removed since the map was made
    ]
    end = cursor + limit
    return MapResponse(
        points=points,
        next_cursor=end if end < len(found.ids) else None,
        total_points=len(found.ids),
        method=found.method,
        collection_size=found.collection_size,
        spread={k: round(v, 4) for k, v in found.spread.items()},
        warning=found.warning,
        index_version=live.index.version,
    )
