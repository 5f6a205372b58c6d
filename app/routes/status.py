"""Liveness, readiness, index facts and Prometheus metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.adaptation import read_choice
from app.deps import LiveDep, ServiceDep
from app.metrics import INDEX_SIZE, INDEX_VERSION, REGISTRY
from app.schemas import ERROR_RESPONSES, AdaptationInfo, EncoderInfo, Health, IndexInfo, Ready
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


@router.get("/encoder", response_model=EncoderInfo, responses={503: ERROR_RESPONSES[503]})
async def encoder_info(live: LiveDep, request: Request) -> EncoderInfo:
    """The encoder that serves: what it is, when and why it was chosen, and any adaptation under way."""
    encoder = live.encoder
    run = Path(encoder.path).parent
    choice = read_choice(run)
    chosen_at = None
    if choice is not None:
        chosen_at = datetime.fromtimestamp((run / "choice.json").stat().st_mtime, UTC).isoformat(timespec="seconds")
    name = str(choice["chosen"]) if choice else run.name  # no decision recorded: the folder says what it is
    adaptation = request.app.state.adaptation
    return EncoderInfo(
        name=name,
        path=encoder.path,
        arch=encoder.arch,
        image_size=encoder.image_size,
        runtime=encoder.runtime,
        sha256=encoder.checksum,
        chosen_at=chosen_at,
        choice=choice,
        adaptation=AdaptationInfo(**adaptation.info()) if adaptation is not None else None,
    )


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
