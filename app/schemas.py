"""Request and response models (they define the OpenAPI schema at /docs)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_serializer


class Neighbour(BaseModel):
    id: int = Field(description="Stable 64-bit image id.")
    score: float = Field(description="Cosine similarity to the query, in [-1, 1].")
    uri: str = Field(description="Where the image came from (path in the source collection).")
    label: str | None = Field(None, description="Class folder name, when the collection had one.")
    width: int
    height: int


class Timings(BaseModel):
    """Where a request's time went; the service adds to it stage by stage."""

    decode_ms: float = Field(0.0, description="Decoding and resizing the upload(s).")
    embed_ms: float = Field(0.0, description="Waiting for and running the encoder (micro-batched).")
    search_ms: float = Field(0.0, description="Index search and catalog look-up.")

    @field_serializer("decode_ms", "embed_ms", "search_ms")
    def _rounded(self, value: float) -> float:
        return round(value, 3)


class SearchResponse(BaseModel):
    neighbours: list[Neighbour]
    index_version: str
    timings: Timings


class BatchSearchResponse(BaseModel):
    results: list[list[Neighbour]] = Field(description="One neighbour list per uploaded image, in order.")
    index_version: str
    timings: Timings


class IndexInfo(BaseModel):
    version: str
    count: int
    index_type: str | None
    search_params: dict[str, int]
    recall_at_10: float | None = Field(description="recall@10 measured at build time against exact search.")
    dim: int
    encoder_sha256: str
    encoder_arch: str
    encoder_runtime: str = Field(description="What runs the encoder: onnx (ONNX Runtime) or torch.")
    built_at: str | None


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    detail: str | None = None


class ErrorDetail(BaseModel):
    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorDetail, "description": "Not an image, or a corrupt one."},
    413: {"model": ErrorDetail, "description": "Body larger than the upload limit, or too many pixels."},
    415: {"model": ErrorDetail, "description": "An image type the service does not decode."},
    503: {"model": ErrorDetail, "description": "The encoder or the index is not loaded yet."},
}


class AddedImage(BaseModel):
    id: int = Field(description="The image's id (the existing one when the same bytes were added before).")
    created: bool = Field(description="False when the bytes were already indexed.")
    sha256: str


class AddImagesResponse(BaseModel):
    images: list[AddedImage]
    index_version: str


class RebuildRequest(BaseModel):
    encoder_path: str | None = Field(None, description="Another encoder.pt on the server to re-embed with.")
    factory: str | None = Field(None, description="A FAISS factory string instead of the automatic choice.")


class RebuildJobInfo(BaseModel):
    id: str
    state: str = Field(description="queued | running | succeeded | failed")
    done: int = Field(description="Images re-embedded so far.")
    total: int
    encoder_path: str | None
    factory: str | None
    created_at: str
    finished_at: str | None
    error: str | None
    version: str | None = Field(description="The published version, once succeeded.")
    timings: dict[str, float]
