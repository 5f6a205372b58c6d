"""Request and response models (they define the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer
from pydantic.config import JsonDict


class Neighbour(BaseModel):
    id: int = Field(description="Stable 64-bit image id.")
    score: float = Field(
        description="Cosine similarity to the query, in [-1, 1]: for an uploaded query, to the best of its views "
        "(the whole image, and crops without a band at the top or bottom and without the corners)."
    )
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


# Shared by the examples of the search answers.
VERSION_EXAMPLE = "20261126T125959Z-efd043"
NEIGHBOUR_EXAMPLE: JsonDict = {"id": 5743, "score": 0.997, "uri": "train/automobile/0742.jpg", "label": "automobile",
                     "width": 32, "height": 32}  # fmt: skip
TIMINGS_EXAMPLE: JsonDict = {"decode_ms": 0.4, "embed_ms": 1.2, "search_ms": 0.9}


class SearchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"neighbours": [NEIGHBOUR_EXAMPLE], "index_version": VERSION_EXAMPLE,
                                         "timings": TIMINGS_EXAMPLE}]}
    )  # fmt: skip

    neighbours: list[Neighbour]
    index_version: str
    timings: Timings


class BatchSearchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"results": [[NEIGHBOUR_EXAMPLE], [NEIGHBOUR_EXAMPLE]],
                                         "index_version": VERSION_EXAMPLE, "timings": TIMINGS_EXAMPLE}]}
    )  # fmt: skip

    results: list[list[Neighbour]] = Field(description="One neighbour list per uploaded image, in order.")
    index_version: str
    timings: Timings


class IndexInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": "20261126T125959Z-efd043",
                    "count": 60000,
                    "index_type": "IVF1024_HNSW32,Flat",
                    "backend": "faiss",
                    "search_params": {"nprobe": 32},
                    "recall_at_10": 0.98,
                    "dim": 192,
                    "encoder_sha256": "2de9c1f6...",
                    "encoder_arch": "small_cnn",
                    "encoder_runtime": "onnx",
                    "built_at": "2026-11-26T12:59:59+00:00",
                }
            ]
        }
    )

    version: str
    count: int
    index_type: str | None
    backend: str = Field(description="Where the vectors live: faiss (in this process) or milvus.")
    vector_store: dict[str, Any] | None = Field(
        None, description="The backend's record: for Milvus its URI, collection, alias and index type."
    )
    search_params: dict[str, int]
    recall_at_10: float | None = Field(description="recall@10 measured at build time against exact search.")
    dim: int
    encoder_sha256: str
    encoder_arch: str
    encoder_runtime: str = Field(description="What runs the encoder: onnx (ONNX Runtime) or torch.")
    encoder_loaded: bool = Field(
        True, description="False while the encoder is unloaded after an idle time (the next upload reloads it)."
    )
    built_at: str | None
    read_replica: bool = Field(False, description="This server follows another process's index; writes go there.")


class AdaptationInfo(BaseModel):
    state: str = Field(description="waiting, training, rebuilding, adapted, kept-shipped or failed.")
    message: str
    run_dir: str
    step: int | None = Field(None, description="Training steps (or, while re-indexing, images) done.")
    total_steps: int | None = None
    seconds_left: float | None = Field(None, description="Of the adaptation's time budget.")
    started_at: float | None = Field(None, description="Unix time.")
    finished_at: float | None = None


class EncoderInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "adapted",
                    "path": "demo/runs/pretrained-lite0/encoder.pt",
                    "arch": "efficientnet_lite0",
                    "image_size": 224,
                    "runtime": "onnx",
                    "sha256": "2de9c1f6...",
                    "chosen_at": "2026-12-06T06:12:40+00:00",
                    "choice": {"chosen": "adapted", "message": "kept adapted: ..."},
                    "adaptation": {"state": "adapted", "message": "now serving the adapted network: ..."},
                }
            ]
        }
    )

    name: str = Field(
        description="What the run's choice kept: adapted or trained (made from this collection), or the shipped "
        "network's name; without a recorded choice, the encoder's folder (e.g. shipped)."
    )
    path: str
    arch: str
    image_size: int
    runtime: str
    sha256: str
    chosen_at: str | None = Field(None, description="When the run that chose it decided (choice.json).")
    choice: dict[str, Any] | None = Field(None, description="The label-free judge's scores and reason, if any.")
    adaptation: AdaptationInfo | None = Field(None, description="A background adaptation of this collection.")


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class Ready(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ready": True, "detail": None}]})

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "images": [{"id": 60001, "created": True, "sha256": "9f86d081..."}],
                    "index_version": "20261126T125959Z-efd043",
                    "warnings": [],
                }
            ]
        }
    )

    images: list[AddedImage]
    index_version: str
    warnings: list[str] = Field(default_factory=list, description="E.g. labels or uris beyond the images sent.")


class RebuildRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"encoder_path": "runs/new/encoder.pt", "factory": None}]}
    )

    encoder_path: str | None = Field(
        None, pattern=r"\S", max_length=4096, description="Another encoder.pt on the server to re-embed with."
    )
    factory: str | None = Field(
        None, pattern=r"\S", max_length=200, description="A FAISS factory string instead of the automatic choice."
    )


class SyncRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"data": "/photos", "force": False, "max_removed": 0.1}]})

    data: str = Field(pattern=r"\S", max_length=4096, description="The folder on the server the index follows.")
    force: bool = Field(False, description="Go ahead even if the folder is empty or more than max_removed would go.")
    max_removed: float = Field(0.1, ge=0, le=1, description="Largest share of the index one sync may remove.")


class SyncJobInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{
                "id": "9b1d2e", "data": "/photos", "force": False, "max_removed": 0.1, "state": "succeeded",
                "done": {"moved": 2, "added": 70, "removed": 40},
                "summary": {"files": 10030, "hashed": 80, "added": 70, "removed": 40, "changed": 20, "moved": 10},
                "created_at": "2026-12-06T21:00:00+00:00", "finished_at": "2026-12-06T21:00:01+00:00", "error": None,
            }]
        }
    )  # fmt: skip

    id: str
    data: str
    force: bool
    max_removed: float
    state: str = Field(description="queued | running | succeeded | refused (nothing changed: see error) | failed")
    done: dict[str, int] = Field(description="Images moved, added and removed so far.")
    summary: dict[str, int] = Field(description="Once succeeded: files seen and hashed, added, removed, moved, ...")
    created_at: str
    finished_at: str | None
    error: str | None


class RebuildJobInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2a9c",
                    "state": "running",
                    "done": 12000,
                    "total": 60000,
                    "encoder_path": None,
                    "factory": None,
                    "created_at": "2026-11-26T13:00:00+00:00",
                    "finished_at": None,
                    "error": None,
                    "version": None,
                    "timings": {},
                }
            ]
        }
    )

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


class CatalogImage(BaseModel):
    """An indexed image as the catalog knows it."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": 7, "uri": "train/cat/0007.jpg", "label": "cat", "width": 32,
                                         "height": 32, "added_at": "2026-11-26T12:00:00+00:00"}]}
    )  # fmt: skip

    id: int
    uri: str
    label: str | None
    width: int
    height: int
    added_at: str


class BrowseResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "images": [
                        {
                            "id": 7,
                            "uri": "train/cat/0007.jpg",
                            "label": "cat",
                            "width": 32,
                            "height": 32,
                            "added_at": "2026-11-26T12:00:00+00:00",
                        }
                    ],
                    "next_cursor": 7,
                    "index_version": "20261126T125959Z-efd043",
                }
            ]
        }
    )

    images: list[CatalogImage] = Field(description="Catalog rows in id order.")
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    index_version: str


class LabelCount(BaseModel):
    label: str | None = Field(description="A label; null counts the unlabelled images.")
    count: int


class LabelsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "labels": [{"label": "cat", "count": 6000}, {"label": None, "count": 12}],
                    "index_version": "20261126T125959Z-efd043",
                }
            ]
        }
    )

    labels: list[LabelCount] = Field(description="Commonest first.")
    index_version: str


class DuplicateMember(BaseModel):
    id: int
    uri: str
    label: str | None
    score: float = Field(description="Highest cosine to another image of the group (1.0 for byte copies only).")
    copies: list[str] = Field(description="Other uris of byte-identical files merged into this image at ingest.")


REVIEW_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "decision": "keep_one",
    "keep_id": 7,
    "ids": [7, 9],
    "members_sha256": ["5f1c...", "a03e..."],
    "closeness": 0.93,
    "decided_at": "2026-12-06T21:00:00+00:00",
}


class ReviewInfo(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [REVIEW_EXAMPLE]})

    id: int
    decision: Literal["keep_all", "keep_one"]
    keep_id: int | None = Field(description="The image to keep (keep_one); null when it is no longer indexed.")
    ids: list[int] = Field(description="The group's images when decided that are still indexed.")
    members_sha256: list[str] = Field(description="What the decision is stored by: it survives renames and rebuilds.")
    closeness: float = Field(description="A new image joins the decision when at least this close to the group.")
    decided_at: str


class ReviewRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ids": [7, 9], "decision": "keep_one", "keep_id": 7}]})

    ids: list[int] = Field(min_length=2, max_length=1000, description="The group's images.")
    decision: Literal["keep_all", "keep_one"]
    keep_id: int | None = Field(None, description="With keep_one: which image to keep (one of ids).")


class ReviewsResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reviews": [REVIEW_EXAMPLE]}]})

    reviews: list[ReviewInfo]


class Suggestion(BaseModel):
    id: int
    reason: str = Field(description="Why: the largest, the least compressed, or the oldest.")


class DuplicateGroup(BaseModel):
    size: int = Field(description="Files in the group: its images and their byte-identical copies.")
    exact_only: bool = Field(description="True when the group is one image and its byte-identical copies.")
    images: list[DuplicateMember] = Field(description="Best connected first.")
    status: Literal["new", "reviewed", "changed"] = Field(
        "new", description="reviewed: a decision covers it; changed: images not as close as the decided ones joined."
    )
    review: ReviewInfo | None = None
    unreviewed_ids: list[int] = Field([], description="With changed: the images the decision does not cover.")
    suggested: Suggestion | None = Field(None, description="The copy to keep, if one is to be kept.")


class DuplicateCalibration(BaseModel):
    threshold: float = Field(description="max(copy_p5, neighbour_p95), rounded down to 0.005.")
    copy_cosine: dict[str, float] = Field(description="Median cosine of an edited copy to its original, per edit.")
    copy_p5: float = Field(description="5th percentile of the copies' cosines: 95 % of copies score above.")
    neighbour_median: float = Field(description="Median cosine of an image to its nearest other image.")
    neighbour_p95: float = Field(description="95th percentile of that: only 1 image in 20 has a neighbour above.")
    images: int = Field(description="Images edited into copies.")
    warning: str | None = Field(description="Set when the encoder does not tell copies from similar images.")
    candidate: float = Field(
        description="Pairs from this cosine up to the threshold join a group when they look alike in pixels."
    )
    pixel: float | None = Field(
        description="Thumbnail correlation such a pair needs: max(copy_likeness_p5, neighbour_likeness_p95); "
        "null: no pixel check (neighbours look as alike as copies)."
    )
    copy_likeness_p5: float = Field(description="5th percentile of the edited copies' thumbnail correlation.")
    neighbour_likeness_p95: float = Field(
        description="95th percentile of an image's thumbnail correlation with its nearest neighbour."
    )


class DuplicatesResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "threshold": 0.95, "total_groups": 1, "images_searched": 60000, "seconds": 11.5, "next_cursor": None,
            "groups": [{"size": 2, "exact_only": False, "images": [
                {"id": 3, "uri": "a.jpg", "label": None, "score": 0.98, "copies": []},
                {"id": 9, "uri": "a-small.jpg", "label": None, "score": 0.98, "copies": ["backup/a-small.jpg"]},
            ]}],
            "index_version": "20261126T125959Z-efd043",
        }]}
    )  # fmt: skip

    threshold: float
    groups: list[DuplicateGroup] = Field(description="This page of the groups, largest first.")
    total_groups: int
    images_searched: int
    seconds: float = Field(description="Time the search for groups took (0 when answered from the cache).")
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    calibration: DuplicateCalibration | None = Field(
        None, description="How the default threshold was measured (only when no threshold was given)."
    )
    index_version: str


class MapPoint(BaseModel):
    id: int
    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)
    label: str | None


class MapResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "points": [{"id": 1, "x": 0.25, "y": 0.75, "label": "cat"}], "next_cursor": None, "total_points": 1,
            "method": "neighbour-graph layout (10 neighbours an image)", "collection_size": 1,
            "spread": {"std_ratio": 0.8, "effective_rank": 40.0}, "warning": None,
            "index_version": "20261126T125959Z-efd043",
        }]}
    )  # fmt: skip

    points: list[MapPoint] = Field(description="This page of the mapped images (removed images left out).")
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    total_points: int = Field(description="Points on the whole map (a sample for a large collection).")
    method: str = Field(description="How the 2-D coordinates were made.")
    collection_size: int = Field(description="Images in the index when the map was made.")
    spread: dict[str, float] = Field(description="How spread out the mapped vectors are (model.common.spread).")
    warning: str | None = Field(description="Set when the space looks collapsed.")
    index_version: str
