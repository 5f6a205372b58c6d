"""Adding and removing images, and rebuilding the index: the write and admin endpoints."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request, Response

from app.deps import (
    AdminDep,
    ImageId,
    ImagesDep,
    LabelText,
    ReadyGuard,
    ServiceDep,
    SettingsDep,
    UriText,
    read_upload,
)
from app.jobs import Rebuilder, RebuildRunningError
from app.offload import run_blocking
from app.schemas import (
    ERROR_RESPONSES,
    AddedImage,
    AddImagesResponse,
    RebuildJobInfo,
    RebuildRequest,
    SyncJobInfo,
    SyncRequest,
    Timings,
)
from app.sync_job import Syncer, SyncRunningError
from index.folder import SyncRefusedError

router = APIRouter(tags=["writes"])

AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "An API key is configured and the request has none."},
    403: {"description": "Wrong API key."},
    409: {"description": "This server is a read replica: send writes and rebuilds to the writer."},
}


async def get_rebuilder(request: Request) -> Rebuilder:
    found: Rebuilder = request.app.state.rebuilder
    return found


RebuilderDep = Annotated[Rebuilder, Depends(get_rebuilder)]


async def get_syncer(request: Request) -> Syncer:
    found: Syncer = request.app.state.syncer
    return found


SyncerDep = Annotated[Syncer, Depends(get_syncer)]


@router.post(
    "/images",
    status_code=201,
    response_model=AddImagesResponse,
    dependencies=[AdminDep, ReadyGuard],
    responses={**ERROR_RESPONSES, **AUTH_RESPONSES},
)
async def add_images(
    service: ServiceDep,
    settings: SettingsDep,
    images: ImagesDep,
    labels: Annotated[
        list[LabelText] | None, Form(description="Label of each image, in order; images past the list get none.")
    ] = None,
    uris: Annotated[
        list[UriText] | None,
        Form(description="Source URI of each image, in order; images past the list get upload/<sha256>."),
    ] = None,
) -> AddImagesResponse:
    """Store, embed and index images; durable when this answers 201. Same bytes: same id."""
    labels, uris = labels or [], uris or []
    warnings = [
        f"{len(values)} {name} for {len(images)} image(s): the last {len(values) - len(images)} were not used"
        for name, values in (("labels", labels), ("uris", uris))
        if len(values) > len(images)
    ]
    blobs = [await read_upload(img, settings) for img in images]
    uploads = [
        (b, labels[i] if i < len(labels) else None, uris[i] if i < len(uris) else None) for i, b in enumerate(blobs)
    ]
    added = await service.add_images(uploads, Timings())
    return AddImagesResponse(
        images=[AddedImage(id=i, created=c, sha256=s) for i, c, s in added],
        index_version=service.require().index.version,  # the version written to (a rebuild may have swapped)
        warnings=warnings,
    )


@router.delete(
    "/images/{image_id}",
    status_code=204,
    dependencies=[AdminDep, ReadyGuard],
    responses={404: {"description": "Unknown id."}, 503: ERROR_RESPONSES[503], **AUTH_RESPONSES},
)
async def delete_image(service: ServiceDep, rebuilder: RebuilderDep, image_id: ImageId) -> Response:
    """Remove an image from the index, the catalog and the image store."""
    sha256 = await service.remove_image(image_id)
    if sha256 is None:
        raise HTTPException(404, f"no image with id {image_id}")
    # sha256 is unique in the catalog, so no other id shares these bytes.
    await run_blocking(rebuilder.delete_bytes, sha256)
    return Response(status_code=204)


@router.post(
    "/index/rebuild",
    status_code=202,
    response_model=RebuildJobInfo,
    dependencies=[AdminDep, ReadyGuard],
    responses={
        503: ERROR_RESPONSES[503],
        **AUTH_RESPONSES,
        409: {"description": "A rebuild is already running, or this server is a read replica."},
    },
)
async def start_rebuild(rebuilder: RebuilderDep, body: RebuildRequest | None = None) -> RebuildJobInfo:
    """Re-embed the catalog and swap in a new index version in the background."""
    body = body or RebuildRequest()
    try:
        job = rebuilder.start(body.encoder_path, body.factory)
    except RebuildRunningError as exc:
        raise HTTPException(409, str(exc)) from exc
    return RebuildJobInfo(**dataclasses.asdict(job))


@router.get("/index/rebuild/{job_id}", response_model=RebuildJobInfo, responses={404: {"description": "Unknown job."}})
async def rebuild_status(
    rebuilder: RebuilderDep,
    job_id: Annotated[
        str, Path(max_length=64, description="The id POST /index/rebuild answered with.", examples=["3f2a9c"])
    ],
) -> RebuildJobInfo:
    """State, progress, timings and error of a rebuild job."""
    job = rebuilder.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no rebuild job {job_id!r}")
    return RebuildJobInfo(**dataclasses.asdict(job))


@router.post(
    "/index/sync",
    status_code=202,
    response_model=SyncJobInfo,
    dependencies=[AdminDep, ReadyGuard],
    responses={
        503: ERROR_RESPONSES[503],
        **AUTH_RESPONSES,
        404: {"description": "The path is not a folder on the server: nothing was changed."},
        409: {"description": "A sync is already running, or this server is a read replica."},
    },
)
async def start_sync(syncer: SyncerDep, body: SyncRequest) -> SyncJobInfo:
    """Bring the index in step with a folder on the server in the background (index/sync.py):
    new files added, deleted ones removed, edited ones re-embedded, renamed or moved ones kept
    under their id. An unsafe sync (an empty folder, more than `max_removed` of the index gone)
    ends as `refused` and changes nothing."""
    try:
        job = syncer.start(body.data, body.force, body.max_removed)
    except SyncRefusedError as exc:
        raise HTTPException(404, str(exc)) from exc
    except SyncRunningError as exc:
        raise HTTPException(409, str(exc)) from exc
    return SyncJobInfo(**dataclasses.asdict(job))


@router.get("/index/sync/{job_id}", response_model=SyncJobInfo, responses={404: {"description": "Unknown job."}})
async def sync_status(
    syncer: SyncerDep,
    job_id: Annotated[
        str, Path(max_length=64, description="The id POST /index/sync answered with.", examples=["9b1d2e"])
    ],
) -> SyncJobInfo:
    """State, progress and outcome of a sync job."""
    job = syncer.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no sync job {job_id!r}")
    return SyncJobInfo(**dataclasses.asdict(job))
