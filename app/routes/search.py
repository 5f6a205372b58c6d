"""Search by uploaded image(s) and by an indexed image."""

from __future__ import annotations

import asyncio
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, HTTPException, Query, UploadFile

from app.deps import FilterDep, ImageId, ImagesDep, KDep, LiveDep, ServiceDep, SettingsDep, read_upload
from app.schemas import ERROR_RESPONSES, BatchSearchResponse, Neighbour, SearchResponse, Timings
from app.service import Hit

router = APIRouter(tags=["search"])

MinScore = Annotated[
    float | None, Query(ge=-1.0, le=1.0, description="Drop neighbours below this cosine.", examples=[0.5])
]


def to_schema(hits: list[Hit]) -> list[Neighbour]:
    return [
        Neighbour(id=h.id, score=h.score, uri=h.row.uri, label=h.row.label, width=h.row.width, height=h.row.height)
        for h in hits
        if h.row is not None  # removed between search and look-up: skip, never fail
    ]


@router.post("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def search(
    live: LiveDep,
    service: ServiceDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, ...).")],
    k: KDep,
    where: FilterDep,
    min_score: MinScore = None,
) -> SearchResponse:
    """Find the images most similar to an uploaded image (among those the filters select)."""
    timings = Timings()
    data = await read_upload(image, settings)
    hits = await service.search_upload(live.index, data, k, min_score, timings, where)
    return SearchResponse(neighbours=to_schema(hits), index_version=live.index.version, timings=timings)


@router.post("/search/batch", response_model=BatchSearchResponse, responses=ERROR_RESPONSES)
async def search_batch(
    live: LiveDep,
    service: ServiceDep,
    settings: SettingsDep,
    images: ImagesDep,
    k: KDep,
    where: FilterDep,
    min_score: MinScore = None,
) -> BatchSearchResponse:
    """Search for several uploaded images at once: one result list per image."""
    timings = Timings()
    blobs = [await read_upload(img, settings) for img in images]
    queries = await asyncio.gather(*(service.embed_query(b, timings) for b in blobs))
    results = await service.search_vectors(live.index, list(queries), k, min_score, timings, where=where)
    return BatchSearchResponse(
        results=[to_schema(r) for r in results], index_version=live.index.version, timings=timings
    )


@router.get(
    "/images/{image_id}/similar",
    response_model=SearchResponse,
    responses={404: {"description": "Unknown image id."}, **ERROR_RESPONSES},
)
async def similar(
    live: LiveDep, service: ServiceDep, image_id: ImageId, k: KDep, where: FilterDep, min_score: MinScore = None
) -> SearchResponse:
    """More like this: search by an image already in the index (itself excluded)."""
    index, timings = live.index, Timings()
    if not index.rows([image_id]):
        raise HTTPException(404, f"no image with id {image_id}")
    try:
        vector = index.vectors(np.array([image_id]))
    except RuntimeError as exc:  # in the catalog but not (or no longer) in the index
        raise HTTPException(404, f"no image with id {image_id} in the index") from exc
    vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    (hits,) = await service.search_vectors(
        index, [vector.astype(np.float32)], k, min_score, timings, exclude=image_id, where=where
    )
    return SearchResponse(neighbours=to_schema(hits), index_version=index.version, timings=timings)
