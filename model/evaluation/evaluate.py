"""How good and how healthy a representation space is.

- kNN top-1 (Wu et al. 2018, as used by DINO's eval_knn): cosine similarity, k nearest
  train features vote for their class with weight exp(sim / T).
- Linear probe: a linear classifier on frozen, standardised h.
- During training (`evaluate_epoch`): model.evaluation.health on a held-out sample, and kNN.
- `evaluate_encoder` (`latent-search eval`): kNN, 1-NN and the probe of a saved encoder,
  embedded by the runtime the service would use (model.embedding.runtime), with model.evaluation.plots pictures.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from model.embedding.encoder_file import CANDIDATES, CHOICE
from model.evaluation.health import effective_rank, uniformity
from model.evaluation.plots import plot_embedding_map, plot_training_curves

LOG = logging.getLogger(__name__)


@torch.no_grad()
def knn_predict(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    query_feats: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """Predicted class per query. Features must be L2-normalised: (N, d), (N,), (Q, d) -> (Q,)."""
    k = min(k, train_feats.shape[0])
    preds = []
    for start in range(0, query_feats.shape[0], chunk):
        sims = query_feats[start : start + chunk] @ train_feats.T
        top_sims, top_idx = sims.topk(k, dim=1)
        weights = (top_sims / temperature).exp()
        votes = torch.zeros(sims.shape[0], num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 200,
    temperature: float = 0.07,
) -> float:
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    preds = knn_predict(train_feats, train_labels, test_feats, num_classes, k, temperature)
    return float((preds == test_labels).float().mean())


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    epochs: int = 60,
    batch_size: int = 1024,
    lr: float = 1e-2,
    weight_decay: float = 1e-5,
    seed: int = 0,
    min_steps: int = 500,
) -> float:
    """Top-1 of a softmax-regression classifier trained with Adam on frozen features."""
    gen = torch.Generator().manual_seed(seed)
    mu, sigma = train_feats.mean(0), train_feats.std(0) + 1e-6
    xtr, xte = (train_feats - mu) / sigma, (test_feats - mu) / sigma
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    with torch.random.fork_rng():  # a seeded init that leaves the caller's RNG alone
        torch.manual_seed(seed)
        clf = torch.nn.Linear(xtr.shape[1], num_classes)
    opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=weight_decay)
    # Small sets get more epochs: at least `min_steps` updates whatever the size.
    epochs = max(epochs, math.ceil(min_steps / math.ceil(len(xtr) / batch_size)))
    steps = epochs * math.ceil(len(xtr) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=gen)
        for start in range(0, len(xtr), batch_size):
            idx = perm[start : start + batch_size]
            loss = F.cross_entropy(clf(xtr[idx]), train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
    with torch.no_grad():
        return float((clf(xte).argmax(1) == test_labels).float().mean())


def _labelled_features(encoder_path: str | Path, data: str | Path, device: str | None) -> tuple[Any, ...]:
    """(encoder runtime, collection, train and test indices, features, seconds) for labelled data."""
    import time

    from model.collections.data import load_collection
    from model.embedding.runtime import load_runtime

    started = time.perf_counter()
    encoder = load_runtime(encoder_path, device=device)
    coll = load_collection(data, encoder.image_size)
    if not coll.has_labels:
        raise ValueError(
            f"{str(data)!r} has no labels: evaluation needs images in class sub-folders "
            "(ROOT/[train|test/]<class>/<image>)"
        )
    train_idx, test_idx = coll.train_test()
    train_idx, test_idx = train_idx[coll.labels[train_idx] >= 0], test_idx[coll.labels[test_idx] >= 0]
    chunks = torch.split(coll.images, 256)
    feats = torch.cat([torch.from_numpy(encoder.embed_pixels(c.permute(0, 2, 3, 1).numpy())) for c in chunks])
    return encoder, coll, train_idx, test_idx, feats, time.perf_counter() - started


def evaluate_candidates(encoder_path: str | Path, data: str | Path, k: int, device: str | None) -> dict[str, Any]:
    """kNN top-1 and 1-NN of the networks a run compared and did not keep (model.training.release saves
    them in candidates/ beside encoder.pt), each at its own input size."""
    out: dict[str, Any] = {}
    for path in sorted((Path(encoder_path).parent / CANDIDATES).glob("*.pt")):
        encoder, coll, train_idx, test_idx, feats, seconds = _labelled_features(path, data, device)
        tr, te, ytr, yte = feats[train_idx], feats[test_idx], coll.labels[train_idx], coll.labels[test_idx]
        out[path.stem] = {
            "encoder": str(path),
            "image_size": encoder.image_size,
            "knn_top1": knn_accuracy(tr, ytr, te, yte, k=k),
            "knn1_top1": knn_accuracy(tr, ytr, te, yte, k=1),
            "embed_seconds": round(seconds, 2),
        }
    return out


def evaluate_encoder(
    encoder_path: str | Path,
    data: str | Path,
    out_dir: str | Path | None = None,
    k: int = 200,
    probe_epochs: int = 60,
    map_method: str = "tsne",
    device: str | None = None,
    candidates: bool = True,
) -> dict[str, Any]:
    """kNN top-1 and linear probe of a frozen encoder (train split -> test split), plus plots;
    with `candidates`, kNN of the networks the run compared it with and did not keep.

    Writes eval.json, embedding_map.png and (when the run's metrics.jsonl is beside the
    encoder) training_curves.png into `out_dir` (default: the encoder's folder).
    """
    import time

    started = time.perf_counter()
    encoder, coll, train_idx, test_idx, feats, embed_seconds = _labelled_features(encoder_path, data, device)
    tr, te = feats[train_idx], feats[test_idx]
    ytr, yte = coll.labels[train_idx], coll.labels[test_idx]
    result: dict[str, Any] = {
        "encoder": str(encoder_path),
        "encoder_sha256": encoder.checksum,
        "encoder_runtime": encoder.runtime,
        "data": str(data),
        "train_images": len(train_idx),
        "test_images": len(test_idx),
        "classes": coll.classes,
        "skipped_images": coll.skipped,
        "knn_k": k,
        "knn_top1": knn_accuracy(tr, ytr, te, yte, k=k),
        "knn1_top1": knn_accuracy(tr, ytr, te, yte, k=1),
        "linear_probe_top1": linear_probe(tr, ytr, te, yte, epochs=probe_epochs),
        "embed_seconds": round(embed_seconds, 2),
    }
    result["health"] = {
        "feature_std": float(te.std(0).mean()),
        "effective_rank": effective_rank(te),
        "uniformity": uniformity(te[:2000]),
    }
    out = Path(out_dir) if out_dir else Path(encoder_path).parent
    out.mkdir(parents=True, exist_ok=True)
    plot_embedding_map(te, yte, coll.classes, out / "embedding_map.png", method=map_method)
    result["plots"] = [str(out / "embedding_map.png")]
    metrics = Path(encoder_path).parent / "metrics.jsonl"
    if metrics.exists():
        plot_training_curves(metrics, out / "training_curves.png")
        result["plots"].append(str(out / "training_curves.png"))
    if candidates and (found := evaluate_candidates(encoder_path, data, k, device)):
        result["candidates"] = found
    if (choice := Path(encoder_path).parent / CHOICE).exists():  # the run's label-free decision
        result["choice"] = json.loads(choice.read_text())
    result["seconds"] = round(time.perf_counter() - started, 2)
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
