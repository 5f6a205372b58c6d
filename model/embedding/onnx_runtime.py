"""The encoder run by ONNX Runtime: the service's runtime (no torch needed), and the faster one
for bulk embedding on CPUs where it measures faster (depthwise convolutions, small batches).

Reads an encoder.onnx written by model.embedding.onnx_export: uint8 pixels in, unit vectors out, with
the encoder's config and the sha256 of its source encoder.pt in the model's metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

METADATA_KEY = "latent_search"  # written by model.embedding.onnx_export
# Most pixels in one run of the session: a larger batch is embedded in runs of at most this many
# pixels. ONNX Runtime keeps the buffers its largest run needed for as long as the session lives;
# measured with EfficientNet-Lite0 at 224 px on 2 cores (2026-12-06): resident 300 MB after runs of
# 8 images, 950 MB after 32, 4.1 GB after 128, at the same images/s within this machine's noise
# (78-110 at 8, 69-93 at 32, 67-79 at 128). 8 images of 224 x 224 (392 of a 32-px small CNN).
RUN_PIXELS = 8 * 224 * 224
ONNX_FORMAT = "latent-search-onnx/1"


def read_metadata(path: str | os.PathLike[str], session: ort.InferenceSession | None = None) -> dict[str, Any]:
    """The latent-search metadata of an exported encoder, or ValueError saying what is wrong."""
    try:
        session = session or ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for unreadable files
        raise ValueError(f"{str(path)!r} is not a readable ONNX model: {exc}") from exc
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    meta: dict[str, Any] = json.loads(raw) if raw else {}
    if meta.get("format") != ONNX_FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a latent-search encoder export; make one with `latent-search export-onnx ENCODER.pt`"
        )
    return meta


def export_source_sha256(path: str | os.PathLike[str]) -> str | None:
    """The sha256 of the encoder.pt an export was made from (None if unreadable)."""
    try:
        return str(read_metadata(path)["source_sha256"])
    except (ValueError, KeyError):
        return None


class OnnxEncoder:
    """model.embedding.runtime.EncoderRuntime on ONNX Runtime's CPU provider."""

    runtime = "onnx"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, run_pixels: int | None = None) -> None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"ONNX encoder {str(p)!r} not found; export one with `latent-search export-onnx ENCODER.pt`"
            )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ValueError(f"{str(p)!r} is not a readable ONNX model: {exc}") from exc
        meta = read_metadata(p, self.session)
        self.path = str(p)
        self.checksum = str(meta["source_sha256"])
        self.feature_dim = int(meta["feature_dim"])
        self._config: dict[str, Any] = dict(meta["config"])
        self._input = self.session.get_inputs()[0].name
        self.run_images = max(1, (run_pixels or RUN_PIXELS) // (self.image_size * self.image_size))

    @property
    def image_size(self) -> int:
        return int(self._config["image_size"])

    @property
    def arch(self) -> str:
        return str(self._config["arch"])

    def config_dict(self) -> dict[str, Any]:
        return dict(self._config)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) -> float32 (N, d) unit vectors."""
        if len(pixels) == 0:
            return np.empty((0, self.feature_dim), np.float32)
        batch = np.ascontiguousarray(pixels, dtype=np.uint8)
        parts = [
            self.session.run(None, {self._input: batch[start : start + self.run_images]})[0]
            for start in range(0, len(batch), self.run_images)
        ]
        return np.asarray(np.concatenate(parts) if len(parts) > 1 else parts[0], dtype=np.float32)


def load_onnx_encoder(
    path: str | os.PathLike[str], threads: int | None = None, run_pixels: int | None = None
) -> OnnxEncoder:
    return OnnxEncoder(path, threads, run_pixels)
