"""Starting points from installed packages: loading, the clear error without them, adaptation, serving."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from index.build import build_index
from model.embedding import pretrained
from model.embedding.efficientnet_lite import EfficientNetLite
from model.embedding.embed import load_encoder, normalize
from model.embedding.pretrained import MissingWeightsError, export_as_is, load_weights, starting_point, weights_path
from model.embedding.spec import EncoderConfig
from model.evaluation.evaluate import evaluate_encoder
from model.training.config import AugmentConfig, RunConfig, TrainConfig
from model.training.optim import build_optimizer
from model.training.train import train
from tests.app.conftest import make_settings, wait_ready

LITE0 = starting_point("efficientnet_lite0")


def package_state() -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(weights_path(LITE0), map_location="cpu", weights_only=True)
    return state


def test_weights_load_key_for_key_from_the_package() -> None:
    net = EfficientNetLite()
    load_weights(net, "efficientnet_lite0")
    state = package_state()
    ours = net.state_dict()
    assert set(ours) == {k for k in state if not k.startswith("_fc.")}
    assert all(torch.equal(ours[k], state[k]) for k in ours)


def test_the_loaded_network_recognises_a_photograph() -> None:
    """ImageNet's classifier on our features: the cat photo scikit-image ships is a cat (281-285)."""
    import skimage.data

    net = EfficientNetLite().eval()
    load_weights(net, "efficientnet_lite0")
    img = Image.fromarray(skimage.data.chelsea()).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]
    with torch.no_grad():
        h = net(normalize(x, LITE0.mean, LITE0.std))
    state = package_state()
    logits = h @ state["_fc.weight"].T + state["_fc.bias"]
    assert int(logits.argmax()) in range(281, 286)


def test_a_missing_package_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = dataclasses.replace(LITE0, module="no_such_weights_package_xyz", package="no-such-weights-package")
    monkeypatch.setitem(pretrained.STARTING_POINTS, "efficientnet_lite0", gone)
    with pytest.raises(MissingWeightsError, match="no-such-weights-package") as err:
        load_weights(EfficientNetLite(), "efficientnet_lite0")
    assert "uv add no-such-weights-package" in str(err.value)
    with pytest.raises(ValueError, match="unknown starting point"):
        starting_point("imagenet-giant")


def adapt_config() -> RunConfig:
    return RunConfig(
        preset="test-adapt",
        encoder=EncoderConfig(
            arch="efficientnet_lite0",
            init="efficientnet_lite0",
            image_size=32,
            mean=LITE0.mean,
            std=LITE0.std,
            proj_hidden=32,
            proj_out=16,
        ),
        augment=AugmentConfig(crop_size=32),
        train=TrainConfig(
            epochs=1,
            batch_size=8,
            lr=0.05,
            log_every=1,
            knn_every=0,
            health_sample=16,
            amp=False,
            channels_last=True,
            backbone_lr_scale=0.1,
            freeze_bn=True,
            frozen_blocks=3,
        ),
    )


def test_adaptation_starts_from_the_package_and_keeps_frozen_parts(image_folder: Path, tmp_path: Path) -> None:
    result = train(adapt_config(), str(image_folder), tmp_path / "run", stop_at_step=2, progress=False)
    assert result.step == 2
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    state = package_state()
    frozen_prefixes = ("_conv_stem", "_bn0", "_blocks.0.", "_blocks.1.", "_blocks.2.")
    kept = [k for k in state if k.startswith(frozen_prefixes) or "._bn" in k or k.startswith("_bn")]
    assert len(kept) > 100
    for key in kept:  # the frozen blocks, and batch norm (parameters and statistics) everywhere in f
        assert torch.equal(after[f"backbone.{key}"], state[key]), key
    # The blocks after the frozen ones did learn.
    assert not torch.equal(after["backbone._blocks.10._project_conv.weight"], state["_blocks.10._project_conv.weight"])


def test_the_backbone_learns_at_its_fraction_of_the_rate() -> None:
    from model.training.simclr import SimCLRModel

    model = SimCLRModel(adapt_config().encoder)
    opt = build_optimizer(model, adapt_config().train)
    backbone = {id(p) for p in model.backbone.parameters()}
    for group in opt.param_groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert len(in_backbone) <= 1
        if in_backbone == {True}:
            assert group["lr_scale"] == 0.1
        elif in_backbone == {False}:
            assert group["lr_scale"] == 1.0


def test_the_network_as_is_indexes_and_serves(image_folder: Path, tmp_path: Path) -> None:
    path = export_as_is("efficientnet_lite0", tmp_path / "lite0" / "encoder.pt", image_size=64)
    encoder = load_encoder(path)
    assert encoder.feature_dim == 1280 and encoder.image_size == 64
    build_index(encoder, image_folder, tmp_path / "idx", progress=False)
    query = sorted(image_folder.rglob("*.png"))[3]
    with TestClient(create_app(make_settings(path, tmp_path / "idx"))) as client:
        wait_ready(client)
        r = client.post("/search", files={"image": ("q.png", query.read_bytes(), "image/png")}, params={"k": 3})
    assert r.status_code == 200, r.text
    assert r.json()["neighbours"][0]["score"] > 0.999  # the image itself


def test_a_finished_adaptation_records_which_network_it_kept(image_folder: Path, tmp_path: Path) -> None:
    train(adapt_config(), str(image_folder), tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "choice.json").read_text())
    # A test folder is far too small to judge: the shipped network is kept, and the run says why.
    assert record["chosen"] == "pretrained" and record["too_small"] and "too few to judge" in record["message"]
    payload = torch.load(tmp_path / "run" / "encoder.pt", weights_only=True)
    assert payload["trained"]["kept"] == "pretrained" and payload["trained"]["choice"] == record
    state = package_state()
    assert all(torch.equal(v, state[k]) for k, v in payload["state_dict"].items())
    # The network not kept is saved beside it, and `eval` reports its kNN too.
    other = "adapted"
    assert [p.stem for p in (tmp_path / "run" / "candidates").iterdir()] == [other]
    saved = torch.load(tmp_path / "run" / "candidates" / f"{other}.pt", weights_only=True)["state_dict"]
    assert not all(torch.equal(v, state[k]) for k, v in saved.items())  # it did train
    result = evaluate_encoder(tmp_path / "run" / "encoder.pt", image_folder, k=5, probe_epochs=5, map_method="pca")
    assert set(result["candidates"]) == {other}
    assert 0.0 <= result["candidates"][other]["knn_top1"] <= 1.0 and result["candidates"][other]["image_size"] == 32
    assert result["choice"] == record  # `eval` shows the run's decision beside the candidates' kNN


def test_a_distilled_adaptation_compares_every_batch_with_the_frozen_start(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model.training.loss import SimilarityDistillation

    seen: list[tuple[int, int, bool]] = []
    original = SimilarityDistillation.forward

    def spy(self: SimilarityDistillation, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        seen.append((student.shape[0], teacher.shape[1], teacher.requires_grad))
        return original(self, student, teacher)

    monkeypatch.setattr(SimilarityDistillation, "forward", spy)
    cfg = adapt_config()
    train(cfg, str(image_folder), tmp_path / "plain", stop_at_step=2, progress=False)
    assert seen == []  # distill = 0: no teacher, no term
    cfg.train.distill = 1.0
    train(cfg, str(image_folder), tmp_path / "distilled", stop_at_step=2, progress=False)
    # Both views of each of the 8 images, against the frozen network's 1280-d features, no gradient into it.
    assert seen == [(16, 1280, False), (16, 1280, False)]
    after = torch.load(tmp_path / "distilled" / "checkpoint.pt", weights_only=True)["model"]
    assert not any(k.startswith("teacher") for k in after)  # the teacher is rebuilt, never saved
