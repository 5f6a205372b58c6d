"""Export an index's embeddings with their ids (npz of ids/uris/embeddings, or Parquet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index.store import load


def export_embeddings(root: str | Path, out: str | Path, fmt: str = "npy") -> int:
    """Write all (id, uri, embedding) rows; returns the count. PQ indexes give decoded vectors."""
    if fmt not in ("npy", "parquet"):
        raise ValueError(f"unknown export format {fmt!r}; use npy or parquet")
    opened = load(root)
    try:
        rows = list(opened.catalog.rows())
        ids = np.array([r.id for r in rows], dtype=np.int64)
        vectors = opened.vectors(ids).astype(np.float32)
    finally:
        opened.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        np.savez(out, ids=ids, uris=np.array([r.uri for r in rows]), embeddings=vectors)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "id": ids,
                "uri": [r.uri for r in rows],
                "label": [r.label for r in rows],
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
            }
        )
        pq.write_table(table, out)
    return len(ids)
