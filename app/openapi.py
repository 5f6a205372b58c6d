"""The OpenAPI schema with the limits of the settings in force written into it.

Routes are declared once at import time, but some limits are settings (`max_k`, images per
request): the schema FastAPI generates states them here, so that a client (or a fuzzer) that
reads the schema knows every bound the service enforces.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.config import Settings

# Multipart fields that hold one entry per uploaded image.
PER_IMAGE_FIELDS = ("images", "labels", "uris")


def install_schema(app: FastAPI, settings: Settings) -> None:
    """Replace app.openapi with a generator that adds the configured limits (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            app.openapi_schema = with_limits(schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_limits(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "k" and parameter.get("in") == "query":
                    parameter["schema"].update(minimum=1, maximum=settings.max_k)
    for title, component in schema.get("components", {}).get("schemas", {}).items():
        if not title.startswith("Body_"):  # request bodies only, not responses that list images
            continue
        for name, prop in component.get("properties", {}).items():
            if name in PER_IMAGE_FIELDS:
                for variant in prop.get("anyOf", [prop]):
                    if variant.get("type") == "array":
                        variant["maxItems"] = settings.max_images_per_request
                        if name == "images":
                            variant["minItems"] = 1
    return schema
