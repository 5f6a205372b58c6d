"""FastAPI dependencies: each yields a ready, validated object or raises the HTTP error.

All are `async def`: FastAPI runs a plain `def` dependency on a worker thread, a hand-off per
dependency per request that cost more than the work (profiled with py-spy under load).

- `LiveDep`: the loaded encoder, index and image store (503 until loaded), one version for
  the whole request.
- `KDep`, `ImagesDep`: the `k` query parameter and a request's image list, checked against
  the configured limits (422 past them).
- `read_upload`: an upload's bytes, 413 past the size limit.
- `FilterDep`: the optional `label` / `uri_prefix` filters of searches and browsing.
- `LabelText`, `UriText`: metadata as the service accepts it (bounded, no control characters).
- `AdminDep`: the bearer key for write and admin endpoints, when one is configured.
Bad image bytes raise model.embedding.images errors, which app.main maps to 400 / 413 / 415.
"""

from __future__ import annotations

import hmac
from typing import Annotated, NoReturn

from fastapi import Depends, File, HTTPException, Path, Query, Request, UploadFile
from pydantic import StringConstraints

from app.config import Settings
from app.service import Live, SearchService, ServiceNotReadyError
from index.catalog import LABEL_MAX_CHARS, URI_MAX_CHARS, CatalogFilter


async def app_settings(request: Request) -> Settings:
    """The app's settings (given to create_app), shared by every request."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(app_settings)]
# Ids are SQLite INTEGER PRIMARY KEYs: anything outside 0 .. 2^63 - 1 cannot exist (422, not a crash).
ImageId = Annotated[int, Path(ge=0, le=2**63 - 1, description="Stable 64-bit image id.", examples=[1])]


async def get_service(request: Request) -> SearchService:
    service: SearchService = request.app.state.service
    return service


ServiceDep = Annotated[SearchService, Depends(get_service)]


async def get_live(service: ServiceDep) -> Live:
    try:
        return service.require()
    except ServiceNotReadyError as exc:
        raise HTTPException(503, str(exc)) from exc


LiveDep = Annotated[Live, Depends(get_live)]
ReadyGuard = Depends(get_live)  # for routes that need the service loaded but not its parts


def unprocessable(location: list[str], message: str) -> NoReturn:
    """A 422 shaped like FastAPI's own validation errors."""
    raise HTTPException(422, [{"loc": location, "msg": message, "type": "value_error"}])


async def checked_k(
    settings: SettingsDep,
    k: Annotated[
        int, Query(description="How many neighbours to return (1 to the configured maximum).", examples=[10])
    ] = 10,
) -> int:
    if not 1 <= k <= settings.max_k:
        unprocessable(["query", "k"], f"k must be between 1 and {settings.max_k}")
    return k


KDep = Annotated[int, Depends(checked_k)]


async def checked_images(
    settings: SettingsDep, images: Annotated[list[UploadFile], File(description="One or more images.")]
) -> list[UploadFile]:
    if not 1 <= len(images) <= settings.max_images_per_request:
        unprocessable(["body", "images"], f"send between 1 and {settings.max_images_per_request} images")
    return images


ImagesDep = Annotated[list[UploadFile], Depends(checked_images)]

# Printable text: no control characters (a NUL or an escape in a label is a bug, not a label).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
LabelText = Annotated[str, StringConstraints(min_length=1, max_length=LABEL_MAX_CHARS, pattern=TEXT_PATTERN)]
UriText = Annotated[str, StringConstraints(min_length=1, max_length=URI_MAX_CHARS, pattern=TEXT_PATTERN)]
MAX_FILTER_LABELS = 100


async def catalog_filter(
    label: Annotated[
        list[LabelText] | None,
        Query(
            max_length=MAX_FILTER_LABELS,
            description="Only images with one of these labels (repeat the parameter).",
            examples=[["cat", "dog"]],
        ),
    ] = None,
    uri_prefix: Annotated[
        UriText | None, Query(description="Only images whose uri starts with this.", examples=["train/"])
    ] = None,
) -> CatalogFilter:
    return CatalogFilter(tuple(dict.fromkeys(label or ())), uri_prefix)


FilterDep = Annotated[CatalogFilter, Depends(catalog_filter)]


async def read_upload(upload: UploadFile, settings: Settings) -> bytes:
    """The upload's bytes, or 413 past the size limit (read at most limit + 1 bytes)."""
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, f"image larger than the {settings.max_upload_bytes}-byte limit")
    return data


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """Write and admin endpoints: `Authorization: Bearer <key>` when a key is configured."""
    if not settings.api_key:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "this endpoint needs Authorization: Bearer <API key>", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.encode(), settings.api_key.encode()):
        raise HTTPException(403, "wrong API key")


AdminDep = Depends(require_api_key)
