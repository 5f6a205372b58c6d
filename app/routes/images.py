"""Stored image bytes."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from app.deps import ImageId, LiveDep

router = APIRouter(tags=["images"])

CONTENT_TYPES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG": "image/png", b"GIF8": "image/gif", b"BM": "image/bmp"}


def sniff(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    for magic, mime in CONTENT_TYPES.items():
        if data.startswith(magic):
            return mime
    return "application/octet-stream"


@router.get(
    "/images/{image_id}",
    response_class=Response,
    responses={
        200: {"content": {"image/*": {"example": "(the stored image bytes)"}}, "description": "The image bytes."},
        404: {"description": "Unknown id."},
    },
)
async def get_image(live: LiveDep, image_id: ImageId) -> Response:
    """The stored bytes of an indexed image, with its content type."""
    row = live.index.rows([image_id]).get(image_id)
    if row is None:
        raise HTTPException(404, f"no image with id {image_id}")
    data = live.store.get(row.sha256)
    if data is None:
        raise HTTPException(404, f"image {image_id} is in the index but its bytes are not in the image store")
    return Response(data, media_type=sniff(data), headers={"Cache-Control": "public, max-age=31536000, immutable"})
