"""Service settings: environment variables prefixed LATENT_SEARCH_ (or a .env file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LATENT_SEARCH_", env_file=".env", extra="ignore")

    encoder_path: Path = Field(Path("runs/default/encoder.pt"), description="encoder.pt to embed queries with")
    index_path: Path = Field(Path("indexes/default"), description="index directory (holds CURRENT)")
    image_store: Path | None = Field(None, description="content-addressed image store (default INDEX/images)")
    api_key: str | None = Field(None, description="bearer key for write and admin endpoints")
    device: str | None = Field(None, description="cpu or cuda (default: cuda when present)")

    max_upload_bytes: int = Field(10 * 1024**2, ge=1, description="largest accepted request body")
    max_image_pixels: int = Field(40_000_000, ge=1, description="largest image (width x height), from its header")
    max_batch_images: int = Field(32, ge=1, description="images per /search/batch request")
    max_k: int = Field(1000, ge=1, description="largest k a search may ask for")

    batch_max_size: int = Field(32, ge=1, description="micro-batch: most queries in one forward pass")
    batch_max_wait_ms: float = Field(3.0, ge=0, description="micro-batch: longest wait for company")
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads (default: the cores this process may use)"
    )
    decode_workers: int | None = Field(
        None, ge=1, description="threads decoding uploads (default: the cores this process may use)"
    )
    rebuild_duty_cycle: float = Field(0.5, gt=0, le=1, description="share of time a rebuild may compute")

    @property
    def store_path(self) -> Path:
        return self.image_store or self.index_path / "images"


@lru_cache
def get_settings() -> Settings:
    return Settings()
