"""Every setting of the service and the CLI: environment variables prefixed LATENT_SEARCH_ (or .env).

Flat names (LATENT_SEARCH_MAX_K, ...), grouped below by concern. Defaults that the offline
jobs share are imported from where they are defined (pixel limits: model.embedding.images; recall
target and memory budget: index.plan), not written again. Renamed settings still accept
their earlier names (LATENT_SEARCH_TORCH_THREADS, ..._MAX_BATCH_IMAGES, ..._BATCH_MAX_SIZE).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.plan import DEFAULT_MEMORY_BUDGET, DEFAULT_RECALL_TARGET
from index.vector_store import BackendChoice, StoreSettings
from model.embedding.images import UPLOAD_MAX_PIXELS
from model.embedding.runtime import Runtime

PREFIX = "LATENT_SEARCH_"


def _named(name: str, *earlier: str) -> AliasChoices:
    """Accept a setting under its name and its earlier names, as a keyword or an env variable."""
    names = (name, *earlier)
    return AliasChoices(*names, *(PREFIX + n.upper() for n in names))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore", populate_by_name=True)

    # What to serve
    encoder_path: Path = Field(Path("runs/default/encoder.pt"), description="encoder.pt (or encoder.onnx) for queries")
    index_path: Path = Field(Path("indexes/default"), description="index directory (holds CURRENT)")
    image_store: Path | None = Field(None, description="content-addressed image store (default INDEX/images)")
    runtime: Runtime = Field(Runtime.AUTO, description="encoder runtime: auto (ONNX when exported), torch or onnx")
    device: str | None = Field(None, description="torch runtime: cpu or cuda (default: cuda when present)")
    api_key: str | None = Field(None, description="bearer key for write and admin endpoints")

    # Where the vectors live (index.vectors): the index's manifest says; these check or redirect it
    vector_backend: Literal["faiss", "milvus"] | None = Field(
        None, description="the backend the index must use (builds: the one to build in; default faiss)"
    )
    milvus_uri: str | None = Field(
        None, description="Milvus Lite file or server URI (default: the one the index was built with)"
    )
    milvus_consistency: Literal["Strong", "Session", "Bounded", "Eventually"] = Field(
        "Session", description="Milvus read consistency (Strong sees every write at once, but waits for it)"
    )
    read_replica: bool = Field(
        False, description="serve searches over another process's index, following its writes (no writes here)"
    )
    replica_poll_s: float = Field(0.5, gt=0, description="how often a read replica looks for the writer's writes")

    # Limits on what a request may ask
    max_upload_bytes: int = Field(10 * 1024**2, ge=1, description="largest accepted image file")
    max_image_pixels: int = Field(
        UPLOAD_MAX_PIXELS, ge=1, description="largest image (width x height), from its header"
    )
    max_images_per_request: int = Field(
        32, ge=1, validation_alias=_named("max_images_per_request", "max_batch_images"),
        description="images in one /search/batch or POST /images request",
    )  # fmt: skip
    max_k: int = Field(1000, ge=1, description="largest k a search may ask for")

    # How an uploaded query is searched
    query_views: bool = Field(
        True,
        description="search an upload as itself and as crops without a band at the top or bottom and "
        "without the corners, each hit at its best view's cosine (model.embedding.query_views); "
        "false: the whole image only",
    )

    # Compute: micro-batching of queries, threads
    microbatch_max_size: int = Field(
        32, ge=1, validation_alias=_named("microbatch_max_size", "batch_max_size"),
        description="most queries (each with its views) embedded in one forward pass",
    )  # fmt: skip
    microbatch_max_wait_ms: float = Field(
        3.0, ge=0, validation_alias=_named("microbatch_max_wait_ms", "batch_max_wait_ms"),
        description="longest a query waits for company while others are still decoding",
    )  # fmt: skip
    encoder_threads: int | None = Field(
        None, ge=1, validation_alias=_named("encoder_threads", "torch_threads"),
        description="the encoder's intra-op threads (default: the cores this process may use)",
    )  # fmt: skip
    encoder_run_pixels: int = Field(
        8 * 224 * 224,
        ge=1,
        description="most pixels ONNX Runtime embeds in one run (bounds the buffers it keeps: "
        "8 images of 224 px, ~300 MB resident with EfficientNet-Lite0)",
    )
    encoder_idle_unload_s: float = Field(
        300.0,
        ge=0,
        description="unload the encoder after this many seconds without an embedding, reload it on the "
        "next (about a second); 0: keep it loaded",
    )
    decode_workers: int | None = Field(
        None, ge=1, description="threads decoding uploads (default: the cores this process may use)"
    )
    # One: the search stage runs beside the encoder and decoding, and OpenMP threads fighting
    # them for the cores cost more than they give (bench.serve, 2 cores: 185 -> 252 q/s at 16).
    search_threads: int = Field(1, ge=1, description="FAISS (OpenMP) threads for searches (FAISS backend only)")

    # Rebuilds in the background
    rebuild_duty_cycle: float = Field(0.5, gt=0, le=1, description="share of time a rebuild may compute")
    rebuild_memory_budget: int = Field(DEFAULT_MEMORY_BUDGET, ge=1, description="bytes a rebuilt index may take")
    rebuild_recall_target: float = Field(DEFAULT_RECALL_TARGET, gt=0, le=1, description="recall@10 tuned for")

    # Search first, adapt afterwards (app.adaptation): set by `demo` and `serve --data`
    adapt_data: str | None = Field(None, description="collection to adapt an encoder to in the background")
    adapt_run: Path | None = Field(None, description="run folder of that adaptation")
    adapt_minutes: float | None = Field(None, gt=0, description="its time budget (default: the preset's)")

    # The command line's jobs
    data: str | None = Field(None, description="collection the CLI uses when --data is not given")
    cache: Path | None = Field(None, description="where the sample collection is kept (default XDG_CACHE_HOME)")
    xdg_cache_home: Path | None = Field(
        None, validation_alias="XDG_CACHE_HOME", description="the user's cache folder (default ~/.cache)"
    )
    sample_url: str | None = Field(None, description="a mirror of the sample collection's archive")

    @property
    def store_path(self) -> Path:
        return self.image_store or self.index_path / "images"

    @property
    def sample_cache(self) -> Path:
        if self.cache is not None:
            return self.cache.expanduser()
        return (self.xdg_cache_home or Path.home() / ".cache").expanduser() / "latent-search"

    @property
    def store_settings(self) -> StoreSettings:
        """How the served vector store is opened and searched (each knob goes to its backend)."""
        return StoreSettings(self.milvus_uri, self.milvus_consistency, self.search_threads)

    def backend_choice(self, name: str | None = None, uri: str | None = None) -> BackendChoice:
        """Where a new index's vectors go: flags first, then these settings, then FAISS."""
        return BackendChoice.of(name or self.vector_backend, uri or self.milvus_uri, self.milvus_consistency)


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_table() -> str:
    """Every setting as a Markdown table (variable, default, meaning), made from `Settings` itself:
    README's configuration table is this output (tests/app/test_config.py keeps them equal)."""
    rows = ["| variable | default | what it sets |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        variable = alias if isinstance(alias, str) else PREFIX + name.upper()
        value = field.default
        shown = str(value).lower() if isinstance(value, bool) else value
        shown = value.as_posix() if isinstance(value, Path) else shown
        default = "-" if value is None else f"`{shown}`"
        rows.append(f"| `{variable}` | {default} | {field.description or ''} |")
    return "\n".join(rows)
