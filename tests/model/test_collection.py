"""The recipe chosen from a look at the collection's image headers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.collections.survey import CollectionFacts, choose_preset, embed_side, inspect_collection


def photo_folder(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        size = (640, 480) if i % 2 else (300, 400)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / f"{i}.jpg")
    Image.fromarray(rng.integers(0, 256, (200, 200), dtype=np.uint8)).save(root / "gray.png")
    (root / "broken.jpg").write_bytes(b"not an image")
    return root


def test_small_images_train_from_scratch(image_folder: Path) -> None:
    facts = inspect_collection(str(image_folder))
    assert facts.median_short_side == 32 and facts.sampled > 0
    assert choose_preset(facts, cuda=False)[0] == "cpu-small"
    assert choose_preset(facts, cuda=True)[0] == "resnet18"


def test_photographs_start_from_a_pretrained_network(tmp_path: Path) -> None:
    facts = inspect_collection(str(photo_folder(tmp_path / "photos")))
    assert facts.sampled == 13  # the unreadable file is skipped
    assert (facts.median_short_side, facts.median_long_side) == (300, 400)  # sides 200; 6 x 300x400; 6 x 640x480
    assert facts.grayscale_share == pytest.approx(1 / 13)
    name, why = choose_preset(facts, cuda=False)
    assert name == "pretrained-lite0" and "300 x 400" in why
    assert embed_side(facts) == 224 and "224 px" in why  # never upscaled past the network's own side


@pytest.mark.parametrize(("short", "side"), [(100, 128), (128, 128), (150, 160), (180, 192), (220, 224), (3000, 224)])
def test_photos_are_embedded_at_their_own_resolution(short: int, side: int) -> None:
    facts = CollectionFacts(median_short_side=short, median_long_side=short * 4 // 3, grayscale_share=0.0, sampled=9)
    assert embed_side(facts) == side


def test_a_folder_without_images_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="no readable images"):
        inspect_collection(str(tmp_path))
