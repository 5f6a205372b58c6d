"""FastAPI dependencies: the service (503 until ready), upload reading with limits, errors."""

from __future__ import annotations

import hmac
from typing import Annotated, NoReturn

from fastapi import Depends, HTTPException, Path, Request, UploadFile

from app.config import Settings, get_settings
from app.service import SearchService, UnsupportedImageTypeError
from model.data import ImageTooLargeError, UnreadableImageError

SettingsDep = Annotated[Settings, Depends(get_settings)]
# Ids are SQLite INTEGER PRIMARY KEYs: anything outside 0 .. 2^63 - 1 cannot exist (422, not a crash).
ImageId = Annotated[int, Path(ge=0, le=2**63 - 1, description="Stable 64-bit image id.")]


def get_service(request: Request) -> SearchService:
    service: SearchService = request.app.state.service
    return service


def get_ready_service(request: Request) -> SearchService:
    service = get_service(request)
    if not service.ready:
        reason = f": {service.load_error}" if service.load_error else "; try again in a few seconds"
        raise HTTPException(503, f"the encoder and index are not loaded yet{reason}")
    return service


ServiceDep = Annotated[SearchService, Depends(get_service)]
ReadyServiceDep = Annotated[SearchService, Depends(get_ready_service)]


def unprocessable(location: list[str], message: str) -> NoReturn:
    """A 422 shaped like FastAPI's own validation errors."""
    raise HTTPException(422, [{"loc": location, "msg": message, "type": "value_error"}])


def check_k(k: int, settings: Settings) -> None:
    if not 1 <= k <= settings.max_k:
        unprocessable(["query", "k"], f"k must be between 1 and {settings.max_k}")


async def read_upload(upload: UploadFile, settings: Settings) -> bytes:
    """The upload's bytes, or 413 past the size limit (read at most limit + 1 bytes)."""
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, f"image larger than the {settings.max_upload_bytes}-byte limit")
    return data


def image_error(exc: UnreadableImageError) -> HTTPException:
    if isinstance(exc, ImageTooLargeError):
        return HTTPException(413, f"image too large: {exc}")
    if isinstance(exc, UnsupportedImageTypeError):
        return HTTPException(415, str(exc))
    return HTTPException(400, f"not a readable image: {exc}")


def require_api_key(request: Request, settings: SettingsDep) -> None:
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
