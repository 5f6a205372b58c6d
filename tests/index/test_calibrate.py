"""The measured default duplicate threshold: its statistics against brute force, its rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from index.calibrate import NEAR_DUPLICATE_EDITS, calibrate
from index.images import ImageStore
from index.store import load
from model.embedding.runtime import load_runtime


def test_threshold_follows_its_rule_and_neighbours_match_brute_force(built: Path, tiny_encoder: Path) -> None:
    index = load(built)
    found = calibrate(load_runtime(tiny_encoder, "torch", "cpu"), index, ImageStore(built / "images"))
    ids = np.array(index.catalog.ids())
    vectors = index.vectors(ids).astype(np.float64)
    index.close()
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.max(axis=1)  # every image is in the neighbour sample (54 < 2,000)
    assert math.isclose(found.neighbour_p95, float(np.percentile(nearest, 95)), abs_tol=1e-3)
    assert math.isclose(found.neighbour_median, float(np.median(nearest)), abs_tol=1e-3)
    assert found.images == len(ids) and set(found.copy_cosine) == set(NEAR_DUPLICATE_EDITS)
    raw = max(found.copy_p5, found.neighbour_p95)
    assert found.threshold == round(min(0.999, max(0.5, math.floor(raw / 0.005) * 0.005)), 3)
    assert (found.warning is not None) == (found.neighbour_median >= found.copy_p5)


def test_duplicates_command_measures_its_threshold(built: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import app

    out = tmp_path / "groups.json"
    result = CliRunner().invoke(app, ["duplicates", str(built), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "measured" in result.output and "group(s)" in result.output
    threshold = float(result.output.split("threshold ", 1)[1].split()[0])
    assert json.loads(out.read_text())["threshold"] == threshold
    missing = CliRunner().invoke(app, ["duplicates", str(built), "--encoder", str(tmp_path / "nope.pt")])
    assert missing.exit_code != 0 and "--threshold" in missing.output
