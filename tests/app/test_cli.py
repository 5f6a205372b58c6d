"""The `latent-search` command end to end on a tiny synthetic collection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import app

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_train_eval_index_export(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    text = run(
        "train",
        "--data",
        str(image_folder),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        *["--set", "encoder.width=4", "--set", "augment.crop_size=16", "--set", "train.amp=false"],
        "--threads",
        "2",
        "--set",
        "train.rival=",  # keep the 2-epoch network whatever a pretrained one would score (tested in test_copies)
    )
    assert "finished" in text and (out / "encoder.pt").exists()
    text = run(
        "eval", "--encoder", str(out / "encoder.pt"), "--data", str(image_folder), "--k", "5", "--map-method", "pca"
    )
    assert json.loads((out / "eval.json").read_text())["test_images"] == 18
    idx = tmp_path / "idx"
    text = run("index", "build", "--encoder", str(out / "encoder.pt"), "--data", str(image_folder), "--out", str(idx))
    assert "54 images" in text
    manifest = json.loads(run("index", "info", str(idx)))
    assert manifest["count"] == 54 and manifest["index_type"] == "Flat"
    run("index", "export", str(idx), "--out", str(tmp_path / "e.npz"), "--format", "npy")
    saved = np.load(tmp_path / "e.npz")
    assert saved["embeddings"].shape == (54, 32) and len(set(saved["ids"].tolist())) == 54
    run("index", "export", str(idx), "--out", str(tmp_path / "e.parquet"), "--format", "parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "e.parquet")
    assert table.num_rows == 54 and set(table.column_names) == {"id", "uri", "label", "embedding"}


def test_clear_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "r")], env={"LATENT_SEARCH_DATA": ""})
    assert result.exit_code == 2 and "--data" in result.output
    result = runner.invoke(app, ["index", "info", str(tmp_path)])
    assert result.exit_code == 2 and "index build" in result.output
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--preset", "huge"])
    assert result.exit_code == 2 and "unknown preset" in result.output
    for item, says in (("train.nope=1", "unknown key 'train.nope'"), ("train.lr=fast", "expected a float")):
        result = runner.invoke(app, ["train", "--data", str(tmp_path), "--preset", "cpu-small", "--set", item])
        assert result.exit_code == 2 and says in result.output, result.output


@pytest.mark.slow
def test_demo_searches_first_then_adapts_and_reuses(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--no-serve: the shipped network's index first, then the run in the foreground and (when it
    chose another network) the index of that one; a second call redoes nothing; serving hands the
    run on to the service."""
    from model.training import presets

    small = presets.preset("cpu-small")
    small.encoder.width, small.train.epochs, small.train.knn_every = 4, 1, 0
    small.train.minutes = 0.0  # one epoch, not the preset's time budget
    monkeypatch.setattr(presets, "preset", lambda name: small)
    work = tmp_path / "demo"
    first = run("demo", "--data", str(image_folder), "--workdir", str(work), "--no-serve")
    assert "searching first with efficientnet_lite0 as it ships, at 160 px" in first
    assert "training a cpu-small encoder" in first and first.count("indexing") == 1, first
    # 54 images are too few to judge: the run keeps the shipped network at the side that serves,
    # takes the served files as its encoder, and the index built with them stays.
    assert "reusing index" in first
    shipped = work / "shipped" / "efficientnet_lite0-160" / "encoder.pt"
    assert (work / "runs" / "cpu-small" / "encoder.pt").read_bytes() == shipped.read_bytes()
    second = run("demo", "--data", str(image_folder), "--workdir", str(work), "--no-serve")
    assert "has chosen its encoder" in second and "reusing index" in second
    # Serving (not started here): the demo generates an API key, prints it and hands it on.
    served: list[dict[str, object]] = []
    monkeypatch.setattr("app.cli.serve._serve", lambda *args, **kw: served.append({"args": args, **kw}))
    monkeypatch.delenv("LATENT_SEARCH_API_KEY", raising=False)
    third = run("demo", "--data", str(image_folder), "--workdir", str(work))
    key = served[0]["api_key"]
    assert (
        isinstance(key, str)
        and len(key) >= 24
        and f"API key for writes (POST/DELETE /images, POST /index/rebuild): {key}" in third
    )
    assert "adapt_data" not in served[0]  # the run has chosen: nothing left to adapt
    # A fresh folder serves the shipped network and hands the adaptation to the service.
    served.clear()
    run("demo", "--data", str(image_folder), "--workdir", str(tmp_path / "fresh"))
    assert served[0]["adapt_data"] == str(image_folder)
    assert served[0]["adapt_run"] == tmp_path / "fresh" / "runs" / "cpu-small"


def test_train_help_fits_on_one_screen() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0 and "--set" in result.output
    assert len(result.output.splitlines()) <= 50, result.output


def test_recipe_lists_every_field_a_set_can_change() -> None:
    from model.training.config import override, parse_sets
    from model.training.presets import preset

    result = runner.invoke(app, ["recipe", "pretrained-lite0"])
    assert result.exit_code == 0
    listed = dict(line.split(" = ", 1) for line in result.output.splitlines())
    cfg = preset("pretrained-lite0")
    assert listed["train.distill"] == str(cfg.train.distill) and listed["encoder.arch"] == "efficientnet_lite0"
    assert listed["augment.crop_scale"] == ",".join(map(str, cfg.augment.crop_scale))
    assert len(listed) == sum(len(v) for v in cfg.to_dict().values() if isinstance(v, dict))
    # Every value listed reads back as itself (fields chosen by measurement or empty are left out).
    items = [f"{key}={value}" for key, value in listed.items() if value not in ("measured", "")]
    again = override(cfg, **parse_sets(cfg, items))
    assert again == cfg
    assert runner.invoke(app, ["recipe", "huge"]).exit_code == 2
