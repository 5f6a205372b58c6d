"""Validate the label-free encoder choice (model.evaluation.judge) against labels.

For each labelled collection and each candidate encoder: kNN top-1 (k=200 weighted vote, train
split as the bank, test split as queries, as `latent-search eval`) and 1-NN from the labels, and
every label-free score model.evaluation.judge offers, computed on the train split alone; then the pick
`model.evaluation.judge.choose` makes from the label-free scores, against the best kNN.

    uv run python -m bench.judge --data ../shared/data/flowers5.tar.gz \
        --candidate shipped-128=lite0@128 --candidate shipped-224=lite0@224 \
        --candidate adapted=runs/flowers/candidates/adapted.pt --out runs/judge/flowers5.json

A candidate is `name=PATH` (an encoder.pt) or `name=lite0@SIZE` (EfficientNet-Lite0 as it
ships, embedding at SIZE px). The shipped candidate at the side the collection is embedded at
(`chosen_side`: the collection's own resolution for photos, the rival's side for small images)
is the reference for neighbour agreement and the network the judge weighs trained ones against;
shipped candidates at other sides are measured, to check that side rule, but not judged.
`--report A.json B.json ...` writes the table of several collections into BENCHMARKS.md.
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

from model.collections.data import iter_records
from model.embedding.edits import apply
from model.embedding.images import decode_square, open_image, to_square
from model.embedding.runtime import EncoderRuntime, load_runtime
from model.evaluation import judge
from model.evaluation.copies import copy_retrieval
from model.evaluation.evaluate import knn_accuracy

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


def chosen_side(data: str) -> int:
    """The side a collection is embedded at by the shipped network: its own resolution for
    photographs (model.collections.survey.embed_side), the rival's side for small images."""
    from model.collections.survey import PHOTO_SIDE, embed_side, inspect_collection
    from model.training.adapt import RIVAL_MIN_SIZE

    facts = inspect_collection(data)
    return embed_side(facts) if facts.median_short_side >= PHOTO_SIDE else RIVAL_MIN_SIZE


def open_candidate(spec: str, workdir: Path) -> tuple[EncoderRuntime, bool]:
    """(runtime, shipped?) for `lite0@SIZE` or an encoder path."""
    if spec.startswith("lite0@"):
        from model.embedding.pretrained import export_as_is
        from model.training.release import export_beside

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
    cache = Path(args.workdir) / "cache" / Path(args.data).name.split(".")[0]
    cache.mkdir(parents=True, exist_ok=True)
    for item in args.candidate:
        name, spec = item.split("=", 1)
        key = cache / f"{name}-{args.max_train}-{args.max_test}-{args.views}-{args.copies}"
        if key.with_suffix(".json").exists():  # measured before: the same spec, sample and settings
            row = json.loads(key.with_suffix(".json").read_text())
            if row["spec"] == spec:
                results[name], feats_of[name] = row, np.load(key.with_suffix(".npy"))
                if row["shipped"]:
                    shipped_names.append((name, row["image_size"]))
                continue
        enc, shipped = open_candidate(spec, Path(args.workdir))
        size = enc.image_size
        if size not in pixels:
            pixels[size] = np.stack([decode_square(b, size) for b in blobs])
        t0 = time.perf_counter()
        feats = np.concatenate([enc.embed_pixels(pixels[size][s : s + 32]) for s in range(0, len(blobs), 32)])
        feats_of[name] = feats[train]
        tr, te = torch.from_numpy(feats[train]), torch.from_numpy(feats[is_test])
        ytr, yte = torch.from_numpy(labels[train]), torch.from_numpy(labels[is_test])
        views = np.concatenate(
            [
                enc.embed_pixels(np.stack([to_square(img, size) for img in edited[s : s + 32]]))
                for s in range(0, len(edited), 32)
            ]
        )

        def embed(px: torch.Tensor, enc: EncoderRuntime = enc) -> np.ndarray:
            return enc.embed_pixels(px.permute(0, 2, 3, 1).numpy())

        sample = [pil_train[i] for i in which[: args.copies]]
        copies = copy_retrieval(judge.in_batches(embed), sample, size, queries=args.copies // 2)
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
        key.with_suffix(".json").write_text(json.dumps(results[name]))
        np.save(key.with_suffix(".npy"), feats_of[name])
    # The shipped network at the side the collection's resolution gives (model.collections.survey) is the
    # reference the judge weighs trained networks against; shipped ones at other sides are shown
    # to check that rule, not judged.
    side = chosen_side(args.data)
    base = next((n for n, sz in shipped_names if sz == side), None)
    if base is None:
        raise SystemExit(f"no shipped candidate at {side} px, the side this collection is embedded at")
    for name, row in results.items():
        row["agreement"] = judge.neighbour_agreement(feats_of[name], feats_of[base])
    cands = [
        judge.Candidate(
            name, row["copies"], row["agreement"], row["views"], row["rankme"], row["alpha"], row["shipped"]
        )
        for name, row in results.items()
        if name == base or not row["shipped"]
    ]
    pick, why = judge.choose(cands)
    best = max(results, key=lambda n: results[n]["knn"])
    return {
        "data": args.data,
        "train": len(train),
        "test": int(is_test.sum()),
        "reference": base,
        "side": side,
        "candidates": results,
        "pick": pick.name,
        "why": why,
        "best": best,
        "pick_gap_points": round(100 * (results[best]["knn"] - results[pick.name]["knn"]), 2),
    }


def report(paths: list[str], command: str) -> None:
    """The validation table of several runs' JSON into BENCHMARKS.md ("Encoder choice")."""
    from bench.report import machine, table, today, write_section

    rows = []
    for path in paths:
        result = json.loads(Path(path).read_text())
        name = Path(result["data"]).name.split(".")[0]
        best = result["candidates"][result["best"]]["knn"]
        for cand, row in result["candidates"].items():
            mark = ("**pick**" if cand == result["pick"] else "") + (" (best)" if cand == result["best"] else "")
            rows.append(
                [
                    name,
                    cand,
                    str(row["image_size"]),
                    f"{100 * row['knn']:.1f}",
                    f"{100 * row['nn1']:.1f}",
                    f"{row['copies']:.3f}",
                    f"{row['agreement']:.3f}",
                    f"{row['views']:.3f}",
                    f"{row['rankme']:.0f}",
                    f"{row['alpha']:.2f}",
                    mark.strip(),
                ]
            )
        gap = 100 * best - 100 * result["candidates"][result["pick"]]["knn"]
        rows.append([name, f"*pick within {gap:.1f} points of the best*", "", "", "", "", "", "", "", "", ""])
    header = ["collection", "candidate", "px", "kNN %", "1-NN %", "copies", "agreement", "views", "RankMe", "alpha", ""]
    body = (
        f"## Encoder choice: the label-free judge against labels ({today()})\n\n"
        f"Machine: {machine()}. Command: `{command}` (one per collection, then `--report`).\n\n" + table(header, rows)
    )
    write_section("encoder-choice", body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--report", nargs="+", help="write BENCHMARKS.md's table from these result files and stop")
    p.add_argument("--command", default="uv run python -m bench.judge ...", help="the command, for the report")
    p.add_argument("--data")
    p.add_argument("--candidate", action="append", help="name=PATH or name=lite0@SIZE")
    p.add_argument("--out")
    p.add_argument("--workdir", default="runs/judge")
    p.add_argument("--max-train", type=int, default=4000)
    p.add_argument("--max-test", type=int, default=1000)
    p.add_argument("--views", type=int, default=500, help="images edited for view agreement")
    p.add_argument("--copies", type=int, default=300, help="images in the copy-retrieval gallery")
    args = p.parse_args()
    if args.report:
        report(args.report, args.command)
        return
    if not (args.data and args.candidate and args.out):
        p.error("--data, --candidate and --out are required (or --report)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    Image.MAX_IMAGE_PIXELS = None
    result = evaluate(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("pick", "best", "pick_gap_points")}))


if __name__ == "__main__":
    main()
