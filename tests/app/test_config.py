"""Service settings (app.config): defaults written once elsewhere, earlier names still read."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings, settings_table
from index.plan import DEFAULT_MEMORY_BUDGET, DEFAULT_RECALL_TARGET
from index.vector_store import BackendChoice, StoreSettings
from model.embedding.images import UPLOAD_MAX_PIXELS
from model.embedding.runtime import Runtime


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


def test_readme_lists_every_setting_as_the_settings_make_it() -> None:
    """README's configuration table is settings_table()'s output, between its markers."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start, end = "<!-- settings -->\n", "\n<!-- /settings -->"
    assert start in readme and end in readme, "README.md lacks the settings table's markers"
    assert readme.split(start)[1].split(end)[0] == settings_table(), "regenerate it: app.config.settings_table()"


def test_settings_route_each_backend_its_own_knobs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LATENT_SEARCH_MILVUS_CONSISTENCY", "Strong")
    monkeypatch.setenv("LATENT_SEARCH_SEARCH_THREADS", "2")
    monkeypatch.setenv("LATENT_SEARCH_VECTOR_BACKEND", "milvus")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    s = Settings()
    assert s.store_settings == StoreSettings(None, "Strong", 2)
    assert s.backend_choice() == BackendChoice("milvus", None, "Strong")
    assert s.backend_choice("FAISS ").name == "faiss"
    assert s.sample_cache == tmp_path / "latent-search"
    monkeypatch.setenv("LATENT_SEARCH_CACHE", str(tmp_path / "c"))
    assert Settings().sample_cache == tmp_path / "c"
    with pytest.raises(ValueError, match="unknown vector backend 'annoy'"):
        s.backend_choice("annoy")
