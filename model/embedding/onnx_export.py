"""encoder.pt -> encoder.onnx: f with its preprocessing, for ONNX Runtime (model.embedding.onnx_runtime).

The exported graph takes what the service has after decoding, uint8 pixels (N, S, S, 3), and
returns L2-normalised h (N, d): scaling, mean/std normalisation and the final normalisation
are in the graph, so a runtime needs nothing but the file. The batch axis is dynamic; S is
the encoder's image size. The model's metadata (key "latent_search") holds the encoder's
config, its feature size and the sha256 of the encoder.pt it was made from, which is what
ties it to indexes built with that encoder.pt.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from model.common.atomic import atomic_file
from model.common.checksum import file_sha256
from model.embedding.encoder_file import load_encoder_file
from model.embedding.onnx_runtime import METADATA_KEY, ONNX_FORMAT
from model.embedding.runtime import onnx_path_for

LOG = logging.getLogger(__name__)

OPSET = 17


class _WithPreprocessing(torch.nn.Module):
    def __init__(self, backbone: torch.nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.backbone = backbone
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float() / 255.0
        x = (x - self.mean) / self.std
        return F.normalize(self.backbone(x).float(), dim=1)


def export_onnx(encoder_path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the ONNX export of `encoder_path` (default: beside it, as encoder.onnx)."""
    import onnx

    encoder_path = Path(encoder_path)
    target = Path(out) if out is not None else onnx_path_for(encoder_path)
    backbone, cfg, payload = load_encoder_file(encoder_path)
    wrapped = _WithPreprocessing(backbone, cfg.mean, cfg.std).eval()
    example = torch.zeros(2, cfg.image_size, cfg.image_size, 3, dtype=torch.uint8)
    tmp = target.with_name(f".{target.name}.export")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about shape arithmetic (TF-style padding); the input size is fixed.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped,
                (example,),
                str(tmp),
                input_names=["pixels"],
                output_names=["embedding"],
                dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        model = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    meta = {
        "format": ONNX_FORMAT,
        "config": payload["config"],
        "feature_dim": int(payload["feature_dim"]),
        "source_sha256": file_sha256(encoder_path),
        "source_path": str(encoder_path),
    }
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    with atomic_file(target) as fh:
        fh.write(model.SerializeToString())
    LOG.info("exported %s to %s", encoder_path, target)
    return target
