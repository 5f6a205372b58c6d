"""Liveness, readiness, index facts and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import LiveDep, ServiceDep
from app.metrics import INDEX_SIZE, INDEX_VERSION, REGISTRY
from app.schemas import ERROR_RESPONSES, Health, IndexInfo, Ready
from app.service import SearchService

router = APIRouter(tags=["status"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process is alive and answering."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready, "description": "Still loading."}})
async def ready(service: ServiceDep) -> JSONResponse:
    """The encoder and the index are loaded: searches will be answered."""
    if service.ready:
        return JSONResponse({"ready": True, "detail": None})
    detail = service.load_error or "loading the encoder and the index"
    return JSONResponse({"ready": False, "detail": detail}, status_code=503)


@router.get("/index", response_model=IndexInfo, responses={503: ERROR_RESPONSES[503]})
async def index_info(live: LiveDep) -> IndexInfo:
    """Facts about the live index: version, size, type, search parameters, recall, encoder."""
    return IndexInfo(**SearchService.info(live))


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"example": "latent_search_index_size 60000.0\n"}}}},
)
async def metrics(service: ServiceDep) -> PlainTextResponse:
    """Prometheus metrics in text format."""
    if service.live is not None:
        INDEX_SIZE.set(service.live.index.count)
        INDEX_VERSION.clear()
        INDEX_VERSION.labels(service.live.index.version).set(1)
    return PlainTextResponse(generate_latest(REGISTRY).decode(), media_type=CONTENT_TYPE_LATEST)
