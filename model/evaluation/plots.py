"""Pictures of a run: training curves from metrics.jsonl, and a 2-D map of the space."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


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
