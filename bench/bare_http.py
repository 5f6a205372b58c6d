"""The HTTP floor for bench.serve: a bare FastAPI endpoint that reads the same multipart upload as
POST /search and answers ten fixed neighbours as JSON, with no decoding, model or index.

    uv run python -m uvicorn bench.bare_http:app --port 8001
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, File, UploadFile

app = FastAPI()

HITS = [
    {"id": i, "score": 1.0 - i / 100, "uri": f"train/cat/{i}.jpg", "label": "cat", "width": 32, "height": 32}
    for i in range(10)
]


@app.post("/search")
async def search(image: Annotated[UploadFile, File()], k: int = 10) -> dict[str, Any]:
    await image.read()
    return {"neighbours": HITS[:k], "index_version": "bare", "timings": {}}


@app.get("/ready")
async def ready() -> dict[str, bool]:
    return {"ready": True}
