"""The folder layout of a collection, and which files are images: no torch, so that the
service (index.sync) can use it.

    ROOT/[train|test|val/]<class>/<image>   -> split and label from the path
    ROOT/<image>                            -> no label
"""

from __future__ import annotations

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
SPLIT_NAMES = frozenset({"train", "test", "val"})


def split_and_label(rel_parts: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(split, label) from a path's directory parts, e.g. ('train', 'cat', 'x.jpg').

    A split folder may also sit inside one wrapper folder, as `tar czf photos.tar.gz photos/`
    makes it: ('photos', 'train', 'cat', 'x.jpg') is split 'train', label 'cat'.
    """
    parts = list(rel_parts[:-1])
    split = None
    if len(parts) >= 2 and parts[0].lower() not in SPLIT_NAMES and parts[1].lower() in SPLIT_NAMES:
        parts.pop(0)  # the wrapper folder
    if parts and parts[0].lower() in SPLIT_NAMES:
        split = parts.pop(0).lower()
    label = parts[-1] if parts else None
    return split, label


def label_of(uri: str) -> str | None:
    """The label a folder layout gives the file at `uri` (relative, '/'-separated): its folder's name."""
    return split_and_label(tuple(uri.split("/")))[1]
