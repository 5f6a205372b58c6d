"""The `latent-search` command. Thin: it parses options, calls the library, prints results."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from index.plan import DEFAULT_MEMORY_BUDGET, DEFAULT_RECALL_TARGET
from model.runtime import Runtime

app = typer.Typer(
    help="latent-search: learn an image embedding from your own images and search by similarity.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DATA_ENV = "LATENT_SEARCH_DATA"
DataOpt = Annotated[
    str | None,
    typer.Option("--data", help=f"Folder of images or .tar/.tar.gz archive of one (default: ${DATA_ENV})."),
]


def _setup(verbose: bool, threads: int | None = None, torch_job: bool = True) -> None:
    """Logging, and for jobs that run torch, its thread count (the service sets its own)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not torch_job:
        return
    import torch

    from model.hardware import cores_per_process

    # Set on purpose: torch's default counts the machine's cores, not the ones this process may
    # use (containers, taskset), and under torchrun the processes of one machine share them.
    torch.set_num_threads(threads or cores_per_process())


def _is_main_process() -> bool:
    """False in the processes torchrun starts besides rank 0: they print nothing."""
    return os.environ.get("RANK", "0") == "0"


def _data_path(data: str | None) -> str:
    path = data or os.environ.get(DATA_ENV)
    if not path:
        raise typer.BadParameter(
            f"pass --data PATH (a folder of images or a .tar/.tar.gz of one) or set {DATA_ENV}; "
            "no images at hand? `latent-search sample` fetches a sample collection",
            param_hint="--data",
        )
    return path


def _sample_path() -> str:
    """The cached sample collection, fetched (with a progress bar) and converted on first use."""
    from tqdm import tqdm

    from model.sample import CIFAR10, SampleUnavailableError, converted_path, ensure_sample

    if converted_path().exists():
        return str(converted_path())
    typer.echo(f"no --data given: fetching the sample collection (CIFAR-10, {CIFAR10.size or 0:,} bytes) once")
    with tqdm(total=CIFAR10.size, unit="B", unit_scale=True, desc="download", dynamic_ncols=True) as bar:

        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            path = ensure_sample(progress=progress)
        except SampleUnavailableError as exc:
            bar.close()
            _fail(exc)
    typer.echo(f"sample collection ready: {path}")
    return str(path)


def _auto_preset(source: str) -> str:
    import torch

    from model.collection import choose_preset, inspect_collection

    facts = inspect_collection(source)
    name, why = choose_preset(facts, torch.cuda.is_available())
    if _is_main_process():
        typer.echo(f"preset {name}: {why} (from {facts.sampled} images; --preset to choose another)")
    return name


def _fail(exc: BaseException) -> NoReturn:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def train(
    data: DataOpt = None,
    out: Annotated[Path, typer.Option(help="Run directory (config, metrics, checkpoints, encoder.pt).")] = Path(
        "runs/default"
    ),
    preset: Annotated[
        str,
        typer.Option(
            help="auto (chosen from the collection) | cpu-small | resnet18 | resnet50 | pretrained-lite0 "
            "(adapts an ImageNet network)"
        ),
    ] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in --out exactly.")] = False,
    epochs: Annotated[int | None, typer.Option(help="Epochs, instead of the preset's time budget.")] = None,
    minutes: Annotated[
        float | None, typer.Option(help="Training time budget: steps are planned to fill it (preset default).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch (2 views each).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    temperature: Annotated[float | None, typer.Option(help="NT-Xent temperature tau.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd | lars")] = None,
    loss: Annotated[str | None, typer.Option(help="ntxent | supcon (supcon needs labels)")] = None,
    weight_decay: Annotated[float | None, typer.Option()] = None,
    warmup_epochs: Annotated[float | None, typer.Option()] = None,
    arch: Annotated[str | None, typer.Option(help="small_cnn | resnet18 | resnet34 | resnet50")] = None,
    width: Annotated[int | None, typer.Option(help="Base width of the small CNN.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Side of the images f sees.")] = None,
    view_size: Annotated[int | None, typer.Option(help="Side of the training views at the end of training.")] = None,
    crop_size_min: Annotated[int | None, typer.Option(help="Progressive resizing start size (0: off).")] = None,
    crop_scale_min: Annotated[float | None, typer.Option(help="Smallest crop area fraction.")] = None,
    jitter_strength: Annotated[float | None, typer.Option(help="Colour jitter strength s.")] = None,
    blur_p: Annotated[float | None, typer.Option(help="Gaussian blur probability.")] = None,
    rotate_deg: Annotated[float | None, typer.Option(help="Largest rotation of a view (degrees).")] = None,
    zoom_out_p: Annotated[float | None, typer.Option(help="Probability of a framed, zoomed-out view.")] = None,
    knn_every: Annotated[int | None, typer.Option(help="Epochs between kNN checks (0: never).")] = None,
    log_every: Annotated[int | None, typer.Option(help="Steps between metric rows.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Steps between checkpoints (0: per epoch).")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop cleanly after this much training.")] = None,
    stop_after_steps: Annotated[int | None, typer.Option(help="Checkpoint and stop at this step.")] = None,
    stop_after_minutes: Annotated[
        float | None, typer.Option(help="Checkpoint and stop after this much training in this call (resumable).")
    ] = None,
    init: Annotated[
        str | None, typer.Option(help="Start f from a pretrained network: efficientnet_lite0 (weights from a package).")
    ] = None,
    backbone_lr_scale: Annotated[float | None, typer.Option(help="f's learning rate as a fraction of g's.")] = None,
    frozen_blocks: Annotated[int | None, typer.Option(help="Pretrained blocks of f left unchanged.")] = None,
    amp: Annotated[
        bool | None, typer.Option("--amp/--no-amp", help="bf16 autocast (default: timed on this machine).")
    ] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | cuda:N (default: cuda if present).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train a SimCLR encoder on unlabelled images."""
    _setup(verbose, threads)
    from model.config import override
    from model.config import preset as get_preset
    from model.train import NonFiniteLossError
    from model.train import train as run_train

    try:
        source = _data_path(data)
        if preset == "auto" and not resume:
            preset = _auto_preset(source)
        cfg = get_preset("cpu-small" if preset == "auto" else preset)  # a resumed run reads its own config
        if crop_scale_min is not None:
            cfg.augment.crop_scale = (crop_scale_min, cfg.augment.crop_scale[1])
        cfg = override(
            cfg,
            **{
                "train.epochs": epochs,
                "train.minutes": 0.0 if epochs is not None and minutes is None else minutes,
                "train.batch_size": batch_size,
                "train.lr": lr,
                "train.temperature": temperature,
                "train.optimizer": optimizer,
                "train.loss": loss,
                "train.weight_decay": weight_decay,
                "train.warmup_epochs": warmup_epochs,
                "train.knn_every": knn_every,
                "train.log_every": log_every,
                "train.checkpoint_every": checkpoint_every,
                "train.max_minutes": max_minutes,
                "train.amp": amp,
                "train.compile": compile,
                "train.seed": seed,
                "encoder.arch": arch,
                "encoder.init": init,
                "train.backbone_lr_scale": backbone_lr_scale,
                "train.frozen_blocks": frozen_blocks,
                "encoder.width": width,
                "encoder.image_size": image_size,
                "augment.crop_size": view_size or image_size,
                "augment.crop_size_min": crop_size_min,
                "augment.jitter_strength": jitter_strength,
                "augment.blur_p": blur_p,
                "augment.rotate_deg": rotate_deg,
                "augment.zoom_out_p": zoom_out_p,
            },
        )
        result = run_train(
            cfg,
            source,
            out,
            resume=resume,
            device=device,
            stop_at_step=stop_after_steps,
            stop_after_minutes=stop_after_minutes,
        )
    except (FileNotFoundError, FileExistsError, ValueError, NonFiniteLossError) as exc:
        _fail(exc)
        return
    if not _is_main_process():
        return
    state = "finished" if result.finished else f"stopped at step {result.step}/{result.total_steps}"
    knn = f", kNN top-1 {100 * result.knn_top1:.1f} %" if result.knn_top1 is not None else ""
    typer.echo(f"{state} in {result.seconds / 60:.1f} min of training: loss {result.loss:.3f}{knn}")
    typer.echo(f"encoder: {result.encoder_path}")
    if not result.finished:
        typer.echo(f"continue with: latent-search train --out {out} --resume --data ...")
    typer.echo(f"next: latent-search eval --encoder {result.encoder_path} --data ...")


@app.command("eval")
def evaluate(
    encoder: Annotated[Path, typer.Option(help="encoder.pt from a training run.")],
    data: DataOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for eval.json and plots (default: beside the encoder).")
    ] = None,
    k: Annotated[int, typer.Option(help="Neighbours for kNN.")] = 200,
    map_method: Annotated[str, typer.Option(help="tsne | pca")] = "tsne",
    device: Annotated[str | None, typer.Option()] = None,
    threads: Annotated[int | None, typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """kNN accuracy, linear probe and plots of a trained encoder on labelled data."""
    _setup(verbose, threads)
    from model.evaluate import evaluate_encoder

    try:
        result: dict[str, Any] = evaluate_encoder(
            encoder, _data_path(data), out, k=k, map_method=map_method, device=device
        )
    except (FileNotFoundError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(
        json.dumps(
            {
                key: result[key]
                for key in ("knn_top1", "knn1_top1", "linear_probe_top1", "train_images", "test_images", "seconds")
            },
            indent=2,
        )
    )
    typer.echo(f"wrote {Path(result['plots'][0]).parent / 'eval.json'} and {', '.join(result['plots'])}")


index_app = typer.Typer(help="Build, inspect and export search indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")


@index_app.command("build")
def index_build(
    encoder: Annotated[Path, typer.Option(help="encoder.pt from a training run.")],
    data: DataOpt = None,
    out: Annotated[Path, typer.Option(help="Index directory; a new version is published in it.")] = Path(
        "indexes/default"
    ),
    factory: Annotated[str | None, typer.Option(help="FAISS factory string, overriding the automatic choice.")] = None,
    memory_budget_mb: Annotated[int, typer.Option(help="Memory the index may use.")] = DEFAULT_MEMORY_BUDGET // 2**20,
    target_recall: Annotated[
        float, typer.Option(help="recall@10 the search parameters are tuned to.")
    ] = DEFAULT_RECALL_TARGET,
    runtime: Annotated[Runtime, typer.Option(help="What runs the encoder: auto (ONNX when exported), torch, onnx.")] = (
        Runtime.AUTO
    ),
    batch_size: Annotated[int, typer.Option()] = 256,
    device: Annotated[str | None, typer.Option()] = None,
    threads: Annotated[int | None, typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Embed a collection with f and publish a FAISS cosine index plus catalog."""
    _setup(verbose, threads)
    from index.build import build_index
    from index.pipeline import BuildOptions
    from model.distributed import setup, teardown
    from model.runtime import load_runtime

    if not 0 < target_recall <= 1:
        _fail(ValueError("--target-recall must be in (0, 1]"))
    created = False
    try:
        # Under torchrun: every process embeds a share on its own device; rank 0 builds.
        _, dev, created = setup(device)
        enc = load_runtime(encoder, runtime, str(dev))
        options = BuildOptions(factory, memory_budget_mb * 2**20, target_recall)
        report = build_index(enc, _data_path(data), out, options=options, batch_size=batch_size)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        _fail(exc)
        return
    finally:
        if created:
            teardown()
    if report is None:
        return
    m = report.manifest
    typer.echo(
        f"published {out}/versions/{report.version}: {m['count']} images, {m['index_type']}, "
        f"search {m['search_params'] or 'exact'}, recall@10 {m['recall_at_10']:.3f}, "
        f"{m['skipped_unreadable']} unreadable, {m['duplicates']} duplicates, {m['seconds']['total']:.0f} s"
    )


@index_app.command("info")
def index_info(path: Annotated[Path, typer.Argument(help="Index directory.")]) -> None:
    """Print the manifest of the current version."""
    from index.versions import IndexNotFoundError, read_manifest

    try:
        typer.echo(json.dumps(read_manifest(path), indent=2))
    except IndexNotFoundError as exc:
        _fail(exc)


@index_app.command("export")
def index_export(
    path: Annotated[Path, typer.Argument(help="Index directory.")],
    out: Annotated[Path, typer.Option(help="Output file (.npz for npy, .parquet for parquet).")],
    format: Annotated[str, typer.Option("--format", help="npy | parquet")] = "npy",
) -> None:
    """Write every embedding with its id (and uri)."""
    from index.export import export_embeddings
    from index.versions import IndexNotFoundError

    try:
        n = export_embeddings(path, out, format)
    except (IndexNotFoundError, ValueError) as exc:
        _fail(exc)
        return
    typer.echo(f"wrote {n} embeddings to {out}")


@app.command()
def serve(
    encoder: Annotated[Path | None, typer.Option(help="encoder.pt (default: $LATENT_SEARCH_ENCODER_PATH).")] = None,
    index: Annotated[Path | None, typer.Option(help="Index directory (default: $LATENT_SEARCH_INDEX_PATH).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the search API and web page (settings also come from LATENT_SEARCH_* variables)."""
    _setup(verbose, torch_job=False)
    _serve(encoder, index, host, port)


def _serve(encoder: Path | None, index: Path | None, host: str, port: int, api_key: str | None = None) -> None:
    import uvicorn

    from app.config import Settings
    from app.main import create_app

    overrides: dict[str, Any] = {}
    if encoder:
        overrides["encoder_path"] = encoder
    if index:
        overrides["index_path"] = index
    if api_key:
        overrides["api_key"] = api_key
    settings = Settings(**overrides)
    typer.secho(f"serving on http://{host}:{port}/  (API docs: http://{host}:{port}/docs)", fg=typer.colors.GREEN)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command()
def demo(
    data: DataOpt = None,
    workdir: Annotated[Path, typer.Option(help="Where the run and the index are kept.")] = Path("demo"),
    retrain: Annotated[bool, typer.Option(help="Train again even if an encoder exists.")] = False,
    reindex: Annotated[bool, typer.Option(help="Rebuild the index even if it is current.")] = False,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Stop after training and indexing.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train (preset for this machine), index the whole collection, then serve it.

    Without --data (and LATENT_SEARCH_DATA) it uses the sample collection, fetched once.
    """
    _setup(verbose)
    import shutil

    from index.build import build_index
    from index.versions import IndexNotFoundError, read_manifest
    from model.checksum import file_sha256
    from model.config import preset as get_preset
    from model.runtime import load_runtime
    from model.train import NonFiniteLossError
    from model.train import train as run_train

    source = data or os.environ.get(DATA_ENV) or _sample_path()
    try:
        name = _auto_preset(source)
    except ValueError as exc:
        _fail(exc)
    run_dir, index_dir = workdir / "runs" / name, workdir / "index"
    encoder_path = run_dir / "encoder.pt"
    try:
        if retrain and run_dir.exists():
            shutil.rmtree(run_dir)
        if encoder_path.exists():
            typer.echo(f"[1/3] reusing encoder {encoder_path} (pass --retrain to train again)")
        else:
            resume = (run_dir / "checkpoint.pt").exists()
            typer.echo(f"[1/3] {'resuming' if resume else 'training'} a {name} encoder on {source}")
            run_train(get_preset(name), source, run_dir, resume=resume)
        checksum = file_sha256(encoder_path)
        try:
            current = read_manifest(index_dir)["encoder"]["sha256"] == checksum
        except IndexNotFoundError:
            current = False
        if current and not reindex:
            typer.echo(f"[2/3] reusing index {index_dir} (pass --reindex to rebuild)")
        else:
            typer.echo(f"[2/3] indexing {source}")
            build_index(load_runtime(encoder_path), source, index_dir)
    except (FileNotFoundError, FileExistsError, ValueError, NonFiniteLossError) as exc:
        _fail(exc)
        return
    if no_serve:
        typer.echo(f"done: serve later with `latent-search serve --encoder {encoder_path} --index {index_dir}`")
        return
    import secrets

    api_key = os.environ.get("LATENT_SEARCH_API_KEY") or secrets.token_urlsafe(24)
    if "LATENT_SEARCH_API_KEY" not in os.environ:
        typer.secho(f"API key for writes (POST/DELETE /images, POST /index/rebuild): {api_key}", fg=typer.colors.YELLOW)
        typer.echo("  (set LATENT_SEARCH_API_KEY to choose your own; send it as 'Authorization: Bearer <key>')")
    typer.echo("[3/3] starting the server")
    _serve(encoder_path, index_dir, host, port, api_key)


@app.command("pretrained")
def pretrained_encoder(
    out: Annotated[Path, typer.Option(help="Where to write the encoder.pt.")],
    name: Annotated[str, typer.Option(help="Starting point: efficientnet_lite0.")] = "efficientnet_lite0",
    image_size: Annotated[int | None, typer.Option(help="Side f embeds at (default: the native 224).")] = None,
) -> None:
    """Write a pretrained network as it is (no training) as an encoder.pt to index and serve."""
    _setup(False)
    from model.pretrained import export_as_is

    try:
        path = export_as_is(name, out, image_size)
    except (FileNotFoundError, ValueError) as exc:
        _fail(exc)
    typer.echo(f"encoder: {path}\nnext: latent-search index build --encoder {path} --data ...")


@app.command()
def sample() -> None:
    """Fetch the sample collection (CIFAR-10) into the cache now, for a machine that goes offline later."""
    _setup(False)
    typer.echo(_sample_path())


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
