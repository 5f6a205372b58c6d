"""Search by uploaded image(s) and by an indexed image."""

from __future__ import annotations

import asyncio
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, HTTPException, Query, UploadFile

from app.deps import ImageId, ReadyServiceDep, SettingsDep, check_k, image_error, read_upload, unprocessable
from app.schemas import ERROR_RESPONSES, BatchSearchResponse, Neighbour, SearchResponse
from app.service import Neighbour as Hit
from app.service import SearchService, Timings
from model.data import UnreadableImageError

router = APIRouter(tags=["search"])

KQuery = Annotated[int, Query(description="How many neighbours to return (1 to the configured maximum).")]
MinScore = Annotated[float | None, Query(ge=-1.0, le=1.0, description="Drop neighbours below this cosine.")]


def to_schema(hits: list[Hit]) -> list[Neighbour]:
    return [
        Neighbour(id=h.id, score=h.score, uri=h.row.uri, label=h.row.label, width=h.row.width, height=h.row.height)
        for h in hits
        if h.row is not None  # removed between search and look-up: skip, never fail
    ]


async def embed_upload(service: SearchService, data: bytes, timings: Timings) -> np.ndarray:
    try:
        pixels = await service.decode_async(data, timings)
    except UnreadableImageError as exc:
        raise image_error(exc) from exc
    return await service.embed_async(pixels, timings)


@router.post("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def search(
    service: ReadyServiceDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, ...).")],
    k: KQuery = 10,
    min_score: MinScore = None,
) -> SearchResponse:
    """Find the images most similar to an uploaded image."""
    check_k(k, settings)
    timings = Timings()
    vector = await embed_upload(service, await read_upload(image, settings), timings)
    assert service.index is not None
    version = service.index.version
    (hits,) = await service.search_vectors(vector[None, :], k, min_score, timings)
    return SearchResponse(neighbours=to_schema(hits), index_version=version, timings=timings.as_dict())


@router.post("/search/batch", response_model=BatchSearchResponse, responses=ERROR_RESPONSES)
async def search_batch(
    service: ReadyServiceDep,
    settings: SettingsDep,
    images: Annotated[list[UploadFile], File(description="Several query images.")],
    k: KQuery = 10,
    min_score: MinScore = None,
) -> BatchSearchResponse:
    """Search for several uploaded images at once: one result list per image."""
    check_k(k, settings)
    if not 1 <= len(images) <= settings.max_batch_images:
        unprocessable(["body", "images"], f"send between 1 and {settings.max_batch_images} images")
    timings = Timings()
    blobs = [await read_upload(img, settings) for img in images]
    vectors = await asyncio.gather(*(embed_upload(service, b, timings) for b in blobs))
    assert service.index is not None
    version = service.index.version
    results = await service.search_vectors(np.stack(vectors), k, min_score, timings)
    return BatchSearchResponse(
        results=[to_schema(r) for r in results],
        index_version=version,
        timings=timings.as_dict(),
    )


@router.get(
    "/images/{image_id}/similar",
    response_model=SearchResponse,
    responses={404: {"description": "Unknown image id."}, **ERROR_RESPONSES},
)
async def similar(
    service: ReadyServiceDep,
    settings: SettingsDep,
    image_id: ImageId,
    k: KQuery = 10,
    min_score: MinScore = None,
) -> SearchResponse:
    """More like this: search by an image already in the index (itself excluded)."""
    check_k(k, settings)
    index = service.index
    assert index is not None
    timings = Timings()
    if not index.rows([image_id]):
        raise HTTPException(404, f"no image with id {image_id}")
    try:
        vector = index.vectors(np.array([image_id]))
    except RuntimeError as exc:  # in the catalog but not (or no longer) in the index
        raise HTTPException(404, f"no image with id {image_id} in the index") from exc
    vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    (hits,) = await service.search_vectors(vector.astype(np.float32), k, min_score, timings, exclude=image_id)
    return SearchResponse(neighbours=to_schema(hits), index_version=index.version, timings=timings.as_dict())
