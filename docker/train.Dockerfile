# The offline job (train, eval, index build) for GPU hosts, on a CUDA PyTorch image that
# already carries torch and torchvision; the rest comes from the wheelhouse or the registry.
ARG BASE_IMAGE=pytorch/pytorch:2.11.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}
COPY docker/requirements-train.txt /tmp/requirements-train.txt
COPY docker/wheelhouse/ /wheelhouse/
RUN pip install --no-cache-dir --find-links /wheelhouse -r /tmp/requirements-train.txt
WORKDIR /srv/latent-search
COPY model/ ./model/
COPY index/ ./index/
COPY app/ ./app/
ENV PYTHONPATH=/srv/latent-search PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent latent
USER 10001:10001
ENTRYPOINT ["python", "-m", "app.cli"]
CMD ["--help"]
