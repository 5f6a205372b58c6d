"""Validate the label-free encoder choice (model.judge) against labels.

For each labelled collection and each candidate encoder: kNN top-1 (k=200 weighted vote, train
split as the bank, test split as queries, as `latent-search eval`) and 1-NN from the labels, and
every label-free score model.judge offers, computed on the train split alone; then the pick
`model.judge.choose` makes from the label-free scores, against the best kNN.

    uv run python -m bench.judge --data ../shared/data/flowers5.tar.gz \
        --candidate shipped-128=lite0@128 --candidate shipped-224=lite0@224 \
        --candidate adapted=runs/flowers/candidates/adapted.pt --out runs/judge/flowers5.json

A candidate is `name=PATH` (an encoder.pt) or `name=lite0@SIZE` (EfficientNet-Lite0 as it
ships, embedding at SIZE px). The first shipped candidate at 224 px (or the first shipped one)
is the reference for neighbour agreement.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from model import judge
from model.copies import copy_retrieval
from model.data import iter_records
from model.edits import apply
from model.evaluate import knn_accuracy
from model.images import decode_square, open_image, to_square
from model.runtime import EncoderRuntime, load_runtime

LOG = logging.getLogger("bench.judge")
VIEW_EDITS = ("crop 80 %", "crop 60 %", "brightness+saturation", "JPEG q20", "horizontal flip", "grayscale")


def load_labelled(
    path: str, max_train: int, max_test: int, seed: int = 0
) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """(encoded images, labels, is_test) of an evenly drawn subset of a labelled collection."""
    records = [r for r in iter_records(path) if r.label is not None]
    classes = sorted({r.label for r in records if r.label is not None})
    rng = random.Random(seed)
    chosen = []
    for split, cap in (("train", max_train), ("test", max_test)):
        pool = [r for r in records if (r.split or "train") == split]
        chosen += rng.sample(pool, min(cap, len(pool)))
    labels = np.array([classes.index(r.label or "") for r in chosen])
    is_test = np.array([(r.split or "train") == "test" for r in chosen])
    return [r.data for r in chosen], labels, is_test


def open_candidate(spec: str, workdir: Path) -> tuple[EncoderRuntime, bool]:
    """(runtime, shipped?) for `lite0@SIZE` or an encoder path."""
    if spec.startswith("lite0@"):
        from model.pretrained import export_as_is
        from model.release import export_beside

        size = int(spec.split("@")[1])
        path = workdir / f"lite0-{size}" / "encoder.pt"
        if not path.exists():
            export_as_is("efficientnet_lite0", path, size)
            export_beside(path)
        return load_runtime(path), True
    return load_runtime(spec), False


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    blobs, labels, is_test = load_labelled(args.data, args.max_train, args.max_test)
    train = np.flatnonzero(~is_test)
    rng = np.random.default_rng(0)
    which = np.sort(rng.choice(len(train), min(args.views, len(train)), replace=False))
    pil_train = [open_image(blobs[i]).convert("RGB") for i in train]
    edited = [apply(VIEW_EDITS[j % len(VIEW_EDITS)], pil_train[i], 7919 * j) for j, i in enumerate(which)]
    pixels: dict[int, np.ndarray] = {}
    results: dict[str, dict[str, Any]] = {}
    feats_of: dict[str, np.ndarray] = {}
    shipped_names: list[tuple[str, int]] = []
    for item in args.candidate:
        name, spec = item.split("=", 1)
        enc, shipped = open_candidate(spec, Path(args.workdir))
        size = enc.image_size
        if size not in pixels:
            pixels[size] = np.stack([decode_square(b, size) for b in blobs])
        t0 = time.perf_counter()
        feats = np.concatenate([enc.embed_pixels(pixels[size][s : s + 256]) for s in range(0, len(blobs), 256)])
        feats_of[name] = feats[train]
        tr, te = torch.from_numpy(feats[train]), torch.from_numpy(feats[is_test])
        ytr, yte = torch.from_numpy(labels[train]), torch.from_numpy(labels[is_test])
        views = enc.embed_pixels(np.stack([to_square(img, size) for img in edited]))

        def embed(px: torch.Tensor, enc: EncoderRuntime = enc) -> np.ndarray:
            return enc.embed_pixels(px.permute(0, 2, 3, 1).numpy())

        sample = [pil_train[i] for i in which[: args.copies]]
        copies = copy_retrieval(embed, sample, size, queries=args.copies // 2)
        results[name] = {
            "spec": spec,
            "image_size": size,
            "shipped": shipped,
            "knn": knn_accuracy(tr, ytr, te, yte, k=200),
            "nn1": knn_accuracy(tr, ytr, te, yte, k=1),
            "copies": copies["overall"],
            "views": judge.view_agreement(feats[train], views, which),
            "rankme": judge.rankme(feats[train]),
            "alpha": judge.alpha_req(feats[train]),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if shipped:
            shipped_names.append((name, size))
        LOG.info("%s: %s", name, results[name])
    ref = next((n for n, s in shipped_names if s == 224), shipped_names[0][0] if shipped_names else None)
    for name, row in results.items():
        row["agreement"] = judge.neighbour_agreement(feats_of[name], feats_of[ref]) if ref else float("nan")
    cands = [
        judge.Candidate(
            name, row["copies"], row["agreement"], row["views"], row["rankme"], row["alpha"], row["shipped"]
        )
        for name, row in results.items()
    ]
    pick, why = judge.choose(cands)
    best = max(results, key=lambda n: results[n]["knn"])
    return {
        "data": args.data,
        "train": len(train),
        "test": int(is_test.sum()),
        "reference": ref,
        "candidates": results,
        "pick": pick.name,
        "why": why,
        "best": best,
        "pick_gap_points": round(100 * (results[best]["knn"] - results[pick.name]["knn"]), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--candidate", action="append", required=True, help="name=PATH or name=lite0@SIZE")
    p.add_argument("--out", required=True)
    p.add_argument("--workdir", default="runs/judge")
    p.add_argument("--max-train", type=int, default=4000)
    p.add_argument("--max-test", type=int, default=1000)
    p.add_argument("--views", type=int, default=500, help="images edited for view agreement")
    p.add_argument("--copies", type=int, default=300, help="images in the copy-retrieval gallery")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    Image.MAX_IMAGE_PIXELS = None
    result = evaluate(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("pick", "best", "pick_gap_points")}))


if __name__ == "__main__":
    main()
