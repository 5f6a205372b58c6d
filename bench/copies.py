"""Copy detection: does an edited copy of an image find its original first in the index?

    uv run python -m bench.copies --data COLLECTION --encoder runs/NAME/encoder.pt --name NAME

Indexes the collection with the encoder (`index.build.build_index`, the CLI's build), takes a
fixed random sample of its images, applies each edit of `model.embedding.edits` to each sampled image,
and queries the index the way the service does (PNG bytes -> `model.embedding.runtime.embed_queries`: the
service's decode, each query's views (model.embedding.query_views) -> `search_views` over
`ImageIndex.search`), and once more as the whole image alone (the service with
LATENT_SEARCH_QUERY_VIEWS=false). Reports top-1 per edit and overall (the mean over edits) for
both, and the time a query takes each way, and writes the table into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.report import machine, table, today, write_section
from index.build import build_index
from index.store import ImageIndex, load
from model.collections.data import iter_records
from model.embedding.edits import EDITS, apply
from model.embedding.query_views import QUERY_VIEWS, WHOLE, search_views
from model.embedding.runtime import embed_queries, load_runtime


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def top1(index: ImageIndex, views: list[np.ndarray], truth: list[int]) -> float:
    _, ids = search_views(index.search, views, 1)
    return float(np.mean([len(hit) > 0 and int(hit[0]) == t for hit, t in zip(ids, truth, strict=True)]))


def parse_args(doc: str | None) -> argparse.Namespace:
    """The arguments of a copy-detection benchmark: collection, encoder, section name, the sample."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("LATENT_SEARCH_DATA"), help="collection")
    parser.add_argument("--encoder", required=True, type=Path)
    parser.add_argument("--name", required=True, help="section name, e.g. cifar10-cpu-small")
    parser.add_argument("--sample", type=int, default=300, help="images queried (each with every edit)")
    parser.add_argument("--split", default=None, help="sample only from this split (e.g. test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not args.data:
        parser.error("pass --data PATH or set LATENT_SEARCH_DATA")
    return args


def main() -> None:
    args = parse_args(__doc__)
    encoder = load_runtime(args.encoder)
    ways = {"whole image": (WHOLE,), "query views": QUERY_VIEWS}  # the service with QUERY_VIEWS false / true
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        build_index(encoder, args.data, Path(tmp) / "idx", progress=False)
        build_s = time.perf_counter() - started
        index = load(Path(tmp) / "idx")
        records = [r for r in iter_records(args.data) if args.split is None or r.split == args.split]
        sample = random.Random(args.seed).sample(records, min(args.sample, len(records)))
        truth = []
        for rec in sample:
            row = index.catalog.by_sha256(hashlib.sha256(rec.data).hexdigest())
            truth.append(row.id if row is not None else -1)
        scores: dict[str, dict[str, float]] = {way: {} for way in ways}
        seconds = dict.fromkeys(ways, 0.0)
        for e, name in enumerate(EDITS):
            queries = [
                png(apply(name, Image.open(io.BytesIO(r.data)), args.seed + 7919 * e + i)) for i, r in enumerate(sample)
            ]
            for way, boxes in ways.items():
                started = time.perf_counter()
                views = [
                    v for i in range(0, len(queries), 64) for v in embed_queries(encoder, queries[i : i + 64], boxes)
                ]
                scores[way][name] = top1(index, views, truth)
                seconds[way] += time.perf_counter() - started
            print(name, {way: f"{scores[way][name]:.3f}" for way in ways}, flush=True)
        count = index.count
        index.close()
    overall = {way: float(np.mean(list(scores[way].values()))) for way in ways}
    print("overall", overall)
    queried = len(sample) * len(EDITS)
    body = (
        f"## Copy detection: {args.name} ({today()})\n\n"
        f"`uv run python -m bench.copies --data {args.data} --encoder {args.encoder} --name {args.name} "
        f"--sample {args.sample}{f' --split {args.split}' if args.split else ''}` on {machine()}. "
        f"Index of {count:,} images built in {build_s:.0f} s ({encoder.arch}, {encoder.feature_dim}-d, "
        f"embedding at {encoder.image_size} px, {encoder.runtime} runtime); "
        f"{len(sample)} sampled images x {len(EDITS)} edits, each queried through the service's decode + embed + "
        "search twice: as the whole image (LATENT_SEARCH_QUERY_VIEWS=false) and as its query views (the default: "
        f"{len(QUERY_VIEWS)} views, model.embedding.query_views). Top-1: the original is the first hit.\n\n"
        + table(
            ["edit", *(f"top-1, {way}" for way in ways)],
            [[name, *(f"{scores[way][name]:.3f}" for way in ways)] for name in EDITS]
            + [["**overall**", *(f"**{overall[way]:.3f}**" for way in ways)]]
            + [
                [
                    "ms a query (decode + embed + search, batches of 64)",
                    *(f"{1000 * seconds[way] / queried:.1f}" for way in ways),
                ]
            ],
        )
    )
    print(body)
    if not args.no_write:
        write_section(f"copies-{args.name}", body)


if __name__ == "__main__":
    main()
