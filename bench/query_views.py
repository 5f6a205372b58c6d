"""Which query views: copy detection with different sets of query crops, by exact search.

    uv run python -m bench.query_views --data COLLECTION --encoder runs/NAME/encoder.pt --name NAME

The question behind `model.embedding.query_views.QUERY_VIEWS`: which crops of a query, searched besides
the whole image (each indexed image at its best view's cosine), find edited copies' originals
most often, and whether a crop view should need a margin over the whole view to count. Embeds
the whole collection once (`to_square`, as the index holds it), takes the same sample and the
same edits as `bench/copies.py`, embeds each edited copy's crops once, and scores every view set
and margin by exact search (a matrix product; `bench/copies.py` measures the chosen set through
the service's approximate index). Writes the table into BENCHMARKS.md.
"""

from __future__ import annotations

import io
import math
import random
import time

import numpy as np
from PIL import Image

from bench.copies import parse_args
from bench.report import machine, table, today, write_section
from model.collections.data import ImageRecord, iter_records
from model.embedding.edits import EDITS, apply
from model.embedding.images import to_square
from model.embedding.query_views import WHOLE, Box, view_squares
from model.embedding.runtime import EncoderRuntime, load_runtime


def _centre(area: float) -> Box:
    m = (1 - math.sqrt(area)) / 2
    return (m, m, 1 - m, 1 - m)


# Every crop tried once; a view set is a selection of them (the whole image always first).
CROPS: dict[str, Box] = {
    "no bottom band": (0.0, 0.0, 1.0, 0.85),
    "no top band": (0.0, 0.15, 1.0, 1.0),
    "no left band": (0.15, 0.0, 1.0, 1.0),
    "no right band": (0.0, 0.0, 0.85, 1.0),
    "middle 80 %": _centre(0.8),
    "middle 60 %": _centre(0.6),
}
SETS: dict[str, tuple[str, ...]] = {
    "whole only": (),
    "+ middle 60 %": ("middle 60 %",),
    "+ no bottom band": ("no bottom band",),
    "+ no bottom band, middle 60 %": ("no bottom band", "middle 60 %"),
    "+ no bottom / top band, middle 60 % (the default)": ("no bottom band", "no top band", "middle 60 %"),
    "+ no band on any side, middle 60 %": (
        "no bottom band",
        "no top band",
        "no left band",
        "no right band",
        "middle 60 %",
    ),
    "+ no bottom / top band, middle 80 % and 60 %": ("no bottom band", "no top band", "middle 80 %", "middle 60 %"),
}
DEFAULT = "+ no bottom / top band, middle 60 % (the default)"
MARGINS = (0.01, 0.02, 0.05)  # a crop view's cosine counts minus this (the default set only)


def embed_whole(encoder: EncoderRuntime, records: list[ImageRecord], size: int) -> np.ndarray:
    """The whole images, squared as the index holds them."""
    return encoder.embed_pixels(
        np.stack([to_square(Image.open(io.BytesIO(r.data)).convert("RGB"), size) for r in records])
    )


def main() -> None:
    args = parse_args(__doc__)
    started = time.perf_counter()
    encoder = load_runtime(args.encoder)
    size = encoder.image_size
    records = list(iter_records(args.data))
    gallery = np.concatenate([embed_whole(encoder, records[i : i + 1024], size) for i in range(0, len(records), 1024)])
    pool = [i for i, r in enumerate(records) if args.split is None or r.split == args.split]
    picked = random.Random(args.seed).sample(pool, min(args.sample, len(pool)))
    truth = np.asarray(picked)
    boxes = (WHOLE, *CROPS.values())
    column = {name: i + 1 for i, name in enumerate(CROPS)}
    rows: dict[str, dict[str, float]] = {name: {} for name in [*SETS, *(f"default, margin {m}" for m in MARGINS)]}
    for e, edit in enumerate(EDITS):
        edited = [
            apply(edit, Image.open(io.BytesIO(records[i].data)), args.seed + 7919 * e + k) for k, i in enumerate(picked)
        ]
        views = np.concatenate([view_squares(img, size, boxes) for img in edited])
        sims = (encoder.embed_pixels(views) @ gallery.T).reshape(len(edited), len(boxes), -1)
        for name, crops in SETS.items():
            chosen = sims[:, [0, *(column[c] for c in crops)]]
            rows[name][edit] = float(np.mean(chosen.max(axis=1).argmax(axis=1) == truth))
        crops_of_default = [column[c] for c in SETS[DEFAULT]]
        for m in MARGINS:
            best = np.maximum(sims[:, 0], sims[:, crops_of_default].max(axis=1) - m)
            rows[f"default, margin {m}"][edit] = float(np.mean(best.argmax(axis=1) == truth))
        print(edit, {name: round(r[edit], 3) for name, r in rows.items()}, flush=True)
    body = (
        f"## Which query views: {args.name} ({today()})\n\n"
        f"`uv run python -m bench.query_views --data {args.data} --encoder {args.encoder} --name {args.name} "
        f"--sample {args.sample}{f' --split {args.split}' if args.split else ''}` on {machine()}; "
        f"{len(records):,} images embedded whole at {size} px, {len(picked)} sampled x {len(EDITS)} edits, "
        f"exact search, {time.perf_counter() - started:.0f} s in all. Top-1 overall, the weakest edit, and the "
        "edits the views are for.\n\n"
        + table(
            ["query views", "overall", "weakest edit", "caption bar", "rotate 10°", "crop 60 %", "crop+flip+JPEG"],
            [
                [
                    name,
                    f"{np.mean(list(r.values())):.3f}",
                    f"{min(r, key=r.__getitem__)} {min(r.values()):.3f}",
                    *(f"{r[e]:.3f}" for e in ("caption bar", "rotate 10°", "crop 60 %", "crop+flip+JPEG")),
                ]
                for name, r in rows.items()
            ],
        )
    )
    print(body)
    if not args.no_write:
        write_section(f"query-views-{args.name}", body)


if __name__ == "__main__":
    main()
