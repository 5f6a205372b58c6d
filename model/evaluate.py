"""How good and how healthy a representation space is.

- kNN top-1 (Wu et al. 2018, as used by DINO's eval_knn): cosine similarity, k nearest
  train features vote for their class with weight exp(sim / T).
- Linear probe: a linear classifier on frozen, standardised h.
- Health: alignment and uniformity (Wang & Isola 2020), per-dimension std of normalised h,
  effective rank (Roy & Vetterli 2007). A collapsed encoder has std -> 0 and rank -> 1.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

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


def alignment(h1: torch.Tensor, h2: torch.Tensor, alpha: float = 2.0) -> float:
    """E ||f(x) - f(x+)||^alpha over positive pairs of unit vectors (lower is better)."""
    return float((h1 - h2).norm(dim=1).pow(alpha).mean())


def uniformity(h: torch.Tensor, t: float = 2.0) -> float:
    """log E exp(-t ||f(x) - f(y)||^2) over distinct pairs of unit vectors (lower is better)."""
    sq = torch.pdist(h.double()).pow(2)
    return float(sq.mul(-t).exp().mean().log())


def effective_rank(h: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) of the centred features, in [1, d]."""
    s = torch.linalg.svdvals((h - h.mean(0)).double())
    p = s / s.sum().clamp_min(1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def health(h: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor) -> dict[str, float]:
    """Health of normalised features h (clean views) and h1, h2 (two augmented views).

    `std_ratio` is the mean per-dimension std times sqrt(d): about 1 for features spread over
    the sphere, near 0 for a collapse.
    """
    d = h.shape[1]
    std = float(h.std(0).mean())
    return {
        "alignment": alignment(h1, h2),
        "uniformity": uniformity(h),
        "feature_std": std,
        "std_ratio": std * math.sqrt(d),
        "effective_rank": effective_rank(h),
        "dim": float(d),
        "samples": float(h.shape[0]),
    }


def collapse_warning(stats: dict[str, float]) -> str | None:
    """A human-readable warning if the health stats look like a (partial) collapse."""
    if stats["std_ratio"] < 0.1:
        return (
            f"representation collapse: per-dimension std is {stats['feature_std']:.4f} "
            f"({stats['std_ratio']:.3f} of a uniform spread); lower the learning rate or "
            "raise the temperature"
        )
    # n samples span at most n - 1 dimensions: judge the rank against what the sample can show.
    reachable = min(stats["dim"], stats.get("samples", stats["dim"] + 1) - 1)
    if stats["effective_rank"] < max(2.0, 0.01 * reachable) and reachable >= 2:
        return f"dimensional collapse: effective rank {stats['effective_rank']:.1f} of {int(stats['dim'])} dimensions"
    return None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    with Path(path).open() as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def plot_training_curves(metrics_path: str | Path, out_png: str | Path) -> None:
    """Loss per step, and kNN accuracy / uniformity per epoch, from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    steps = [r for r in rows if r.get("kind") == "step"]
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot([r["step"] for r in steps], [r["loss"] for r in steps])
    axes[0].set(title="NT-Xent loss", xlabel="step")
    knn = [r for r in epochs if r.get("knn_top1") is not None]
    axes[1].plot([r["epoch"] for r in knn], [100 * r["knn_top1"] for r in knn], marker="o")
    axes[1].set(title="kNN top-1 (%)", xlabel="epoch")
    axes[2].plot([r["epoch"] for r in epochs], [r["uniformity"] for r in epochs], marker="o", label="uniformity")
    axes[2].plot([r["epoch"] for r in epochs], [r["alignment"] for r in epochs], marker="o", label="alignment")
    axes[2].set(title="health (lower is better)", xlabel="epoch")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def plot_embedding_map(
    feats: torch.Tensor,
    labels: torch.Tensor,
    classes: list[str],
    out_png: str | Path,
    method: str = "tsne",
    max_points: int = 2000,
    seed: int = 0,
) -> None:
    """A 2-D map of the representation space (t-SNE after PCA-50, or PCA), coloured by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(feats), generator=gen)[:max_points]
    x, y = feats[idx].numpy(), labels[idx].numpy()
    if method == "tsne":
        x50 = PCA(n_components=min(50, x.shape[1], len(x)), random_state=seed).fit_transform(x)
        xy = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, len(x) / 4)).fit_transform(x50)
    else:
        xy = PCA(n_components=2, random_state=seed).fit_transform(x)
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for c, name in enumerate(classes):
        mask = y == c
        ax.scatter(xy[mask, 0], xy[mask, 1], s=4, color=cmap(c % cmap.N), label=name)
    ax.set(title=f"representation space ({method.upper()}, {len(x)} test images)", xticks=[], yticks=[])
    ax.legend(markerscale=3, fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def evaluate_encoder(
    encoder_path: str | Path,
    data: str | Path,
    out_dir: str | Path | None = None,
    k: int = 200,
    probe_epochs: int = 60,
    map_method: str = "tsne",
    device: str | None = None,
) -> dict[str, Any]:
    """kNN top-1 and linear probe of a frozen encoder (train split -> test split), plus plots.

    Writes eval.json, embedding_map.png and (when the run's metrics.jsonl is beside the
    encoder) training_curves.png into `out_dir` (default: the encoder's folder).
    """
    import time

    from model.data import load_collection
    from model.embed import load_encoder

    started = time.perf_counter()
    encoder = load_encoder(encoder_path, device)
    coll = load_collection(data, encoder.image_size)
    if not coll.has_labels:
        raise ValueError(
            f"{str(data)!r} has no labels: evaluation needs images in class sub-folders "
            "(ROOT/[train|test/]<class>/<image>)"
        )
    train_idx, test_idx = coll.train_test()
    train_idx, test_idx = train_idx[coll.labels[train_idx] >= 0], test_idx[coll.labels[test_idx] >= 0]
    feats = torch.from_numpy(encoder.embed_uint8(coll.images))
    embed_seconds = time.perf_counter() - started
    tr, te = feats[train_idx], feats[test_idx]
    ytr, yte = coll.labels[train_idx], coll.labels[test_idx]
    result: dict[str, Any] = {
        "encoder": str(encoder_path),
        "encoder_sha256": encoder.checksum,
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
    result["seconds"] = round(time.perf_counter() - started, 2)
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
