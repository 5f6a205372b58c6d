# The search service for CPU hosts: ONNX Runtime + FAISS + FastAPI, no torch.
#   Anywhere with a package registry:   docker build -f docker/api.Dockerfile .
#   Offline (as on our machines):       docker/build-local.sh  (fills docker/wheelhouse, local base)
# With wheels in docker/wheelhouse the install is offline (--no-index); with none, from the registry.
# REQUIREMENTS=requirements-milvus.txt adds the Milvus client (the compose profile "milvus").
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS deps
ARG REQUIREMENTS=requirements-api.txt
# Dependencies first, in their own layer: code changes do not reinstall them.
COPY docker/requirements-*.txt /tmp/
COPY docker/wheelhouse/ /wheelhouse/
RUN python3 -m venv /opt/venv \
 && if ls /wheelhouse/*.whl >/dev/null 2>&1; then \
        /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheelhouse -r /tmp/${REQUIREMENTS}; \
    else \
        /opt/venv/bin/pip install --no-cache-dir -r /tmp/${REQUIREMENTS}; \
    fi \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && find /opt/venv/lib/python3*/site-packages -type d -name tests -prune -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/pip /opt/venv/lib/python3*/site-packages/setuptools

FROM ${BASE_IMAGE}
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent latent
COPY --from=deps /opt/venv /opt/venv
WORKDIR /srv/latent-search
COPY model/ ./model/
COPY index/ ./index/
COPY app/ ./app/
# LATENT_SEARCH_ENCODER_PATH may name encoder.pt (its encoder.onnx beside it is served) or encoder.onnx.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/srv/latent-search \
    PYTHONUNBUFFERED=1 \
    LATENT_SEARCH_ENCODER_PATH=/data/encoder/encoder.pt \
    LATENT_SEARCH_INDEX_PATH=/data/index \
    UVICORN_HOST=0.0.0.0 \
    UVICORN_PORT=8000
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['UVICORN_PORT']}/health\", timeout=2)"]
# uvicorn reads UVICORN_HOST / UVICORN_PORT (and any other UVICORN_* option) from the environment.
CMD ["python3", "-m", "uvicorn", "app.main:app_factory", "--factory"]
