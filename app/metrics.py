"""Prometheus metrics. One registry per process; /metrics renders it in text format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "latent_search_requests_total",
    "HTTP requests by endpoint and status.",
    ["method", "endpoint", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "latent_search_request_seconds",
    "HTTP request latency by endpoint and status.",
    ["method", "endpoint", "status"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "latent_search_stage_seconds",
    "Time per query stage (decode, embed, search).",
    ["stage"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "latent_search_embed_batch_size",
    "Queries sharing one forward pass (micro-batching).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
INDEX_SIZE = Gauge("latent_search_index_images", "Images in the live index.", registry=REGISTRY)
INDEX_VERSION = Gauge(
    "latent_search_index_version_info", "The live index version (value 1).", ["version"], registry=REGISTRY
)
