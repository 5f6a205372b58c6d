"""kNN against a brute-force reference, health metrics, eval on synthetic labelled data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.evaluation.evaluate import evaluate_encoder, knn_predict, linear_probe
from model.training.train import train
from tests.conftest import tiny_config


def knn_reference(train: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int, t: float, c: int) -> np.ndarray:
    preds = []
    for q in queries:
        sims = train @ q
        order = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(c)
        for j in order:
            votes[labels[j]] += np.exp(sims[j] / t)
        preds.append(int(np.argmax(votes)))
    return np.array(preds)


@pytest.mark.parametrize(("k", "t"), [(1, 0.07), (5, 0.07), (20, 0.5)])
def test_knn_matches_brute_force(k: int, t: float) -> None:
    gen = torch.Generator().manual_seed(k)
    train_x = F.normalize(torch.randn(200, 16, generator=gen), dim=1)
    labels = torch.randint(0, 4, (200,), generator=gen)
    queries = F.normalize(torch.randn(50, 16, generator=gen), dim=1)
    got = knn_predict(train_x, labels, queries, 4, k=k, temperature=t, chunk=7)
    want = knn_reference(train_x.double().numpy(), labels.numpy(), queries.double().numpy(), k, t, 4)
    assert (got.numpy() == want).mean() >= 0.98  # float ties may break differently


def test_linear_probe_separates_separable_data() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=gen) * 3
    y = torch.randint(0, 3, (300,), generator=gen)
    x = centres[y] + torch.randn(300, 8, generator=gen)
    assert linear_probe(x[:200], y[:200], x[200:], y[200:], epochs=30) > 0.9


def test_eval_command_on_synthetic_labelled_data(image_folder: Path, tmp_path: Path) -> None:
    train(tiny_config(epochs=2), str(image_folder), tmp_path / "run", progress=False)
    result = evaluate_encoder(tmp_path / "run" / "encoder.pt", image_folder, k=5, probe_epochs=20, map_method="pca")
    assert result["train_images"] == 36 and result["test_images"] == 18
    assert 0.0 <= result["knn_top1"] <= 1.0 and 0.0 <= result["linear_probe_top1"] <= 1.0
    # The synthetic classes differ in structure, so even this tiny model is well above chance (1/3).
    assert result["linear_probe_top1"] > 0.5
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["knn_top1"] == result["knn_top1"]
    assert (tmp_path / "run" / "embedding_map.png").stat().st_size > 1000
    assert (tmp_path / "run" / "training_curves.png").stat().st_size > 1000


def test_eval_refuses_unlabelled_data(image_folder: Path, tmp_path: Path) -> None:
    train(tiny_config(epochs=1, knn_every=0), str(image_folder), tmp_path / "run", progress=False)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted(image_folder.rglob("*.png"))[:5]):
        (flat / f"{i}.png").write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match="no labels"):
        evaluate_encoder(tmp_path / "run" / "encoder.pt", flat)
