"""Service settings (app.config): defaults written once elsewhere, earlier names still read."""

from __future__ import annotations

import pytest

from app.config import Settings
from index.plan import DEFAULT_MEMORY_BUDGET, DEFAULT_RECALL_TARGET
from model.images import UPLOAD_MAX_PIXELS
from model.runtime import Runtime


def test_defaults_come_from_where_they_are_defined() -> None:
    s = Settings()
    assert s.max_image_pixels == UPLOAD_MAX_PIXELS
    assert (s.rebuild_memory_budget, s.rebuild_recall_target) == (DEFAULT_MEMORY_BUDGET, DEFAULT_RECALL_TARGET)
    assert s.runtime is Runtime.AUTO


def test_new_and_earlier_names_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENT_SEARCH_TORCH_THREADS", "3")
    monkeypatch.setenv("LATENT_SEARCH_MAX_BATCH_IMAGES", "5")
    monkeypatch.setenv("LATENT_SEARCH_MICROBATCH_MAX_SIZE", "7")
    monkeypatch.setenv("LATENT_SEARCH_RUNTIME", "torch")
    s = Settings()
    assert (s.encoder_threads, s.max_images_per_request, s.microbatch_max_size) == (3, 5, 7)
    assert s.runtime is Runtime.TORCH
    assert Settings(encoder_threads=1).encoder_threads == 1
    monkeypatch.setenv("LATENT_SEARCH_RUNTIME", "tensorflow")
    with pytest.raises(ValueError, match="runtime"):
        Settings()
