"""Judge a finished run's trained network again, as its end would now (model.training.adapt.choose),
without training it again: for a change of the judge or of the rival's side.

    uv run python -m bench.rejudge --run runs/default-cifar10 --data ../shared/data/cifar10-jpg.tar.gz

Takes the run's trained network (candidates/trained.pt or adapted.pt when the run kept another,
else encoder.pt), the run's held-out images (the collection's test split, or a tenth of it, as
model.training.feed holds out; at most 1,000) and the shipped network the run compares with, and prints
the decision and writes it beside the run as choice-rejudged.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from model.collections.data import load_collection
from model.embedding.encoder_file import load_encoder_file
from model.training.adapt import Network, choose, shipped_rival, shipped_start
from model.training.feed import _split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--data", required=True)
    args = p.parse_args()
    cands = [args.run / "candidates" / f"{n}.pt" for n in ("trained", "adapted")]
    path = next((c for c in cands if c.exists()), args.run / "encoder.pt")
    backbone, cfg, payload = load_encoder_file(path)
    run_cfg = json.loads((args.run / "config.json").read_text())
    trained = Network(
        "adapted" if cfg.init else "trained", backbone.eval(), cfg, int(payload["feature_dim"]), shipped=False
    )
    shipped = shipped_start(cfg) if cfg.init else shipped_rival(run_cfg["train"]["rival"], cfg)
    if shipped is None:
        raise SystemExit("this run has no shipped network to compare with")
    coll = load_collection(args.data, cfg.image_size)
    _, heldout = _split(coll, int(run_cfg["train"]["health_sample"]), int(run_cfg["train"]["seed"]))
    gen = torch.Generator().manual_seed(int(run_cfg["train"]["seed"]))
    heldout = heldout[torch.randperm(len(heldout), generator=gen)[:1000]]
    result = choose(trained, shipped, coll.images[heldout], torch.device("cpu"), len(coll))
    (args.run / "choice-rejudged.json").write_text(json.dumps(result.record, indent=2) + "\n")
    print(result.message)


if __name__ == "__main__":
    main()
