"""The embedding seam: pixels -> unit vectors h, whatever runs the encoder.

Every caller that turns images into vectors (index build, the service's queries and rebuilds,
evaluation of a saved encoder, benchmarks) holds an `EncoderRuntime` and calls
`embed_pixels`. Two runtimes implement it: torch (`model.embedding.embed.Encoder`, reads encoder.pt)
and ONNX Runtime (`model.embedding.onnx_runtime.OnnxEncoder`, reads encoder.onnx). Both report the
sha256 of the encoder.pt they come from, so an index built with one is served by the other.
This module imports neither torch nor onnxruntime: `load_runtime` imports the one it needs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from model.embedding.images import MAX_IMAGE_PIXELS, decode_image, open_image
from model.embedding.query_views import QUERY_VIEWS, Box, decode_views, regroup


class Runtime(StrEnum):
    AUTO = "auto"  # ONNX Runtime when an export of the encoder is there, else torch
    TORCH = "torch"
    ONNX = "onnx"


class EncoderRuntime(Protocol):
    path: str  # the file it was loaded from
    checksum: str  # sha256 of the encoder.pt: ties an index to its encoder
    feature_dim: int
    runtime: str

    @property
    def image_size(self) -> int: ...

    @property
    def arch(self) -> str: ...

    def config_dict(self) -> dict[str, Any]:
        """The EncoderConfig as plain data (what an index manifest records)."""
        ...

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) -> float32 (N, d) unit vectors."""
        ...


def manifest_entry(encoder: EncoderRuntime) -> dict[str, Any]:
    """How an index version names the encoder that built it."""
    return {"path": encoder.path, "sha256": encoder.checksum, "config": encoder.config_dict()}


def embed_bytes(encoder: EncoderRuntime, blobs: list[bytes], max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Encoded images -> (N, d), decoded as the service decodes them. Raises
    model.embedding.images.UnreadableImageError for a bad one."""
    pixels = [decode_image(b, encoder.image_size, max_pixels).pixels for b in blobs]
    if not pixels:
        return np.empty((0, encoder.feature_dim), np.float32)
    return encoder.embed_pixels(np.stack(pixels))


def embed_queries(
    encoder: EncoderRuntime,
    blobs: list[bytes],
    boxes: Sequence[Box] = QUERY_VIEWS,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> list[np.ndarray]:
    """Encoded query images -> the (V, d) vectors of each one's views (model.embedding.query_views), as the
    service embeds an uploaded query; search them with `model.embedding.query_views.search_views`."""
    views = [decode_views(open_image(b, max_pixels), encoder.image_size, boxes) for b in blobs]
    if not views:
        return []
    return regroup(encoder.embed_pixels(np.concatenate(views)), views)


def onnx_path_for(encoder_path: str | os.PathLike[str]) -> Path:
    """Where the ONNX export of an encoder.pt lives: beside it, same stem."""
    return Path(encoder_path).with_suffix(".onnx")


def load_runtime(
    path: str | os.PathLike[str],
    runtime: Runtime | str = Runtime.AUTO,
    device: str | None = None,
    threads: int | None = None,
    run_pixels: int | None = None,
) -> EncoderRuntime:
    """Open an encoder (encoder.pt or encoder.onnx) with the runtime asked for, on `threads`
    intra-op threads (default: the runtime's own choice). ONNX Runtime embeds a batch in runs of
    at most `run_pixels` pixels (default `model.embedding.onnx_runtime.RUN_PIXELS`), which bounds
    the buffers it keeps.

    `auto`: an .onnx file runs on ONNX Runtime; an encoder.pt whose export sits beside it (and
    was made from these very weights) too, on the CPU; otherwise torch.
    """
    path, runtime = Path(path), Runtime(runtime)
    wants_gpu = device is not None and device.startswith("cuda")
    if runtime is Runtime.AUTO:
        if path.suffix == ".onnx":
            runtime = Runtime.ONNX
        else:
            runtime = Runtime.ONNX if not wants_gpu and _usable_export(path) else Runtime.TORCH
    if runtime is Runtime.ONNX:
        from model.embedding.onnx_runtime import load_onnx_encoder

        return load_onnx_encoder(path if path.suffix == ".onnx" else onnx_path_for(path), threads, run_pixels)
    if path.suffix == ".onnx":
        raise ValueError(f"{str(path)!r} is an ONNX export: serve it with the onnx runtime, or pass its encoder.pt")
    try:
        from model.embedding.embed import load_encoder
    except ImportError as exc:  # the API image has ONNX Runtime and no torch
        raise RuntimeError(
            f"{str(path)!r} needs torch, which is not installed here (this install runs ONNX encoders): "
            f"export it with `latent-search export-onnx {path}` where torch is, and put the encoder.onnx beside it"
        ) from exc
    return load_encoder(path, device, threads)


def _usable_export(encoder_path: Path) -> bool:
    """An encoder.onnx beside `encoder_path`, exported from it (or the export alone, when only
    it was deployed), and onnxruntime installed."""
    export = onnx_path_for(encoder_path)
    if not export.is_file():
        return False
    if not encoder_path.exists():
        return True
    try:
        from model.embedding.onnx_runtime import export_source_sha256
    except ImportError:
        return False
    from model.common.checksum import file_sha256

    return export_source_sha256(export) == file_sha256(encoder_path)
