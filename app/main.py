"""The FastAPI application: lifespan loads the encoder and the index into app.state.

Loading runs in the background so /health answers at once; /ready and the search endpoints
answer 503 until the encoder and the index are both loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import Match

from app.adaptation import Adaptation, AdaptationPlan
from app.collection import DuplicateCache
from app.config import Settings, get_settings
from app.jobs import Rebuilder
from app.metrics import REQUEST_SECONDS, REQUESTS
from app.offload import run_blocking
from app.openapi import install_schema
from app.replica import follow
from app.routes import collection, images, reviews, search, status, web, writes
from app.service import SearchService, ServiceNotReadyError
from app.sync_job import Syncer
from index.reviews import Reviews
from index.store import ReadReplicaError
from model.embedding.images import ImageTooLargeError, UnreadableImageError, UnsupportedImageTypeError

LOG = logging.getLogger(__name__)
ROUTERS = (search.router, collection.router, reviews.router, images.router, writes.router, status.router, web.router)


async def _load(service: SearchService) -> None:
    try:
        await run_blocking(service.load)
    except Exception as exc:  # keep serving /health and explain on /ready
        service.load_error = f"{type(exc).__name__}: {exc}"
        LOG.error("could not load the encoder and index: %s", service.load_error)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = SearchService(settings)
        app.state.service = service
        app.state.rebuilder = Rebuilder(service, settings.rebuild_duty_cycle)
        app.state.syncer = Syncer(service, app.state.rebuilder)
        app.state.reviews = Reviews(settings.index_path)
        app.state.duplicates = DuplicateCache()
        app.state.adaptation = None
        if settings.adapt_data and settings.adapt_run:
            plan = AdaptationPlan(settings.adapt_data, settings.adapt_run, settings.adapt_minutes)
            app.state.adaptation = Adaptation(service, app.state.rebuilder, plan)
            app.state.adaptation.start()
        service.start()
        loader = asyncio.create_task(_load(service))
        follower = asyncio.create_task(follow(service)) if settings.read_replica else None
        try:
            yield
        finally:
            if app.state.adaptation is not None:
                app.state.adaptation.stop()
            for task in (loader, follower):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await service.close()
            app.state.reviews.close()

    app = FastAPI(
        title="latent-search",
        summary="Find images like this one, with an embedding learned from your own images.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    max_body = settings.max_upload_bytes * settings.max_images_per_request + 1024**2

    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            response: Response = JSONResponse({"detail": f"request body larger than {max_body} bytes"}, 413)
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        labels = (request.method, endpoint, str(response.status_code))
        REQUESTS.labels(*labels).inc()
        REQUEST_SECONDS.labels(*labels).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(UnreadableImageError)
    async def bad_image(request: Request, exc: UnreadableImageError) -> JSONResponse:
        if isinstance(exc, ImageTooLargeError):
            return JSONResponse({"detail": f"image too large: {exc}"}, 413)
        if isinstance(exc, UnsupportedImageTypeError):
            return JSONResponse({"detail": str(exc)}, 415)
        return JSONResponse({"detail": f"not a readable image: {exc}"}, 400)

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        """405 with an Allow header that lists the methods of every route on the path (Starlette
        names only those of the first route it matched: GET /images/{id} but not DELETE)."""
        allowed: set[str] = set()
        for route in [*app.router.routes, *(route for router in ROUTERS for route in router.routes)]:
            methods = getattr(route, "methods", None)
            if methods and route.matches({**request.scope, "method": "GET"})[0] != Match.NONE:
                allowed |= methods
        headers = {"Allow": ", ".join(sorted(allowed))}
        return JSONResponse({"detail": f"method {request.method} not allowed here"}, 405, headers=headers)

    @app.exception_handler(ReadReplicaError)
    async def read_replica(request: Request, exc: ReadReplicaError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 409)

    @app.exception_handler(ServiceNotReadyError)
    async def not_ready(request: Request, exc: ServiceNotReadyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 503)

    for router in ROUTERS:
        app.include_router(router)
    install_schema(app, settings)
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory app.main:app_factory`."""
    return create_app()
