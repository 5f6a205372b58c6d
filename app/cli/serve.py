"""Serving: `serve`, and `demo` (search first with the shipped network, adapt behind it, swap)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from app.adaptation import keeps_served, take_served_files
from app.cli.common import DataOpt, app, auto_preset, cli_settings, configure, fail, sample_path
from app.config import Settings


@app.command()
def serve(
    encoder: Annotated[Path | None, typer.Option(help="encoder.pt (default: $LATENT_SEARCH_ENCODER_PATH).")] = None,
    index: Annotated[Path | None, typer.Option(help="Index directory (default: $LATENT_SEARCH_INDEX_PATH).")] = None,
    data: Annotated[
        str | None,
        typer.Option(help="A folder to search when no encoder exists yet: as `demo` does, in --workdir."),
    ] = None,
    workdir: Annotated[Path, typer.Option(help="With --data: where the run and the index are kept.")] = Path("demo"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the search API and web page (settings also come from LATENT_SEARCH_* variables)."""
    settings = cli_settings()
    if data is not None and not (encoder or settings.encoder_path).exists():
        configure(verbose)
        search_first(data, workdir, settings, serve_at=(host, port))
        return
    configure(verbose, torch_job=False)
    _serve(encoder, index, host, port)


def _serve(
    encoder: Path | None, index: Path | None, host: str, port: int, api_key: str | None = None, **more: Any
) -> None:
    import uvicorn

    from app.main import create_app

    overrides: dict[str, Any] = dict(more)
    if encoder:
        overrides["encoder_path"] = encoder
    if index:
        overrides["index_path"] = index
    if api_key:
        overrides["api_key"] = api_key
    settings = Settings(**overrides)
    typer.secho(f"serving on http://{host}:{port}/  (API docs: http://{host}:{port}/docs)", fg=typer.colors.GREEN)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


# The first index: at most this side, in batches (and decode chunks) of this many images.
# EfficientNet-Lite0 through ONNX Runtime on the 2-core machine here (bench/embed_rates.py): 170
# images/s at 160 px against 106 at 224. Batches of 16 embed a little faster than 64 alone, but the
# build decodes in chunks of the batch: 5,000 photos were searchable 49 s after `demo` started in
# batches of 64 and 60 s in batches of 16 (bench/demo.py, 2026-12-06).
FIRST_SIDE = 160
FIRST_BATCH = 64
FIRST_MAP_SAMPLE = 1000  # images on the first index's map (the swap to the chosen encoder draws the full one)


@app.command()
def demo(
    data: DataOpt = None,
    workdir: Annotated[Path, typer.Option(help="Where the run and the index are kept.")] = Path("demo"),
    retrain: Annotated[bool, typer.Option(help="Adapt again even if a run finished.")] = False,
    reindex: Annotated[bool, typer.Option(help="Rebuild the index even if it is current.")] = False,
    minutes: Annotated[float | None, typer.Option(help="Adaptation budget (default: the preset's).")] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Adapt and index in the foreground, then stop (nothing served).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Search first, adapt afterwards: index the collection with the shipped network and serve it
    at once, adapt an encoder to it in the background, and swap to the encoder the run chooses.

    Without --data (and LATENT_SEARCH_DATA) it uses the sample collection, fetched once.
    """
    configure(verbose)
    settings = cli_settings()
    source = data or settings.data or sample_path()
    search_first(source, workdir, settings, retrain=retrain, reindex=reindex, minutes=minutes,
                 serve_at=None if no_serve else (host, port))  # fmt: skip


def search_first(
    source: str,
    workdir: Path,
    settings: Settings,
    *,
    retrain: bool = False,
    reindex: bool = False,
    minutes: float | None = None,
    serve_at: tuple[str, int] | None = None,
) -> None:
    """What `demo` and `serve --data` do (app.adaptation has the background half)."""
    import shutil

    from index.vector_store import BackendUnavailableError
    from model.embedding.pretrained import MissingWeightsError
    from model.training.presets import preset as get_preset
    from model.training.train import NonFiniteLossError

    try:
        name, chosen = auto_preset(source)
    except ValueError as exc:
        fail(exc)
    run_dir = workdir / "runs" / name
    budget = minutes or get_preset(name).train.minutes or None
    try:
        if retrain and run_dir.exists():
            shutil.rmtree(run_dir)
        adapted = run_dir / "encoder.pt"
        if adapted.exists():
            typer.echo(f"[1/3] the run in {run_dir} has chosen its encoder (pass --retrain to adapt again)")
            serving, adapt = adapted, False
        else:
            try:
                serving, adapt = _shipped(name, chosen, workdir), True
            except MissingWeightsError as exc:  # no shipped network: train first, as before
                typer.echo(f"[1/3] no shipped network to search with first ({exc}); training first")
                _train_in_foreground(name, chosen, source, run_dir, minutes)
                serving, adapt = adapted, False
        index_dir = workdir / "index"
        _index(serving, source, index_dir, settings, reindex)
        if serve_at is None:
            if adapt:
                typer.echo(f"[3/3] adapting an encoder to {source} (without --no-serve: behind the search page)")
                _train_in_foreground(name, chosen, source, run_dir, minutes)
                if keeps_served(run_dir, _image_size(serving)):
                    take_served_files(serving.parent, run_dir)
                _index(adapted, source, index_dir, settings, reindex=False)
            typer.echo(f"done: serve it with `latent-search demo --data {source} --workdir {workdir}`")
            return
    except (FileNotFoundError, FileExistsError, ValueError, NonFiniteLossError, BackendUnavailableError) as exc:
        fail(exc)
        return
    overrides: dict[str, Any] = {}
    if adapt:
        how_long = f"{budget:g} min" if budget else "its preset's epochs"
        typer.echo(f"[3/3] serving now; adapting an encoder to the collection behind it ({how_long}, log: "
                   f"{run_dir}.log); the page says which encoder serves")  # fmt: skip
        overrides = {"adapt_data": source, "adapt_run": run_dir, "adapt_minutes": budget}
    _serve(serving, index_dir, *serve_at, api_key=_api_key(settings), **overrides)


def _shipped(name: str, chosen: dict[str, Any], workdir: Path) -> Path:
    """The network the collection is searched with before any training: the preset's starting
    point (or a run from scratch's rival) as it ships, at the collection's side up to FIRST_SIDE."""
    from model.embedding.pretrained import export_as_is
    from model.training.presets import preset as get_preset
    from model.training.release import export_beside

    cfg = get_preset(name)
    network = cfg.encoder.init or cfg.train.rival
    if not network:
        from model.embedding.pretrained import MissingWeightsError

        raise MissingWeightsError(f"the {name} preset names no pretrained network")
    side = int(chosen.get("encoder.image_size", cfg.encoder.image_size)) if cfg.encoder.init else FIRST_SIDE
    side = min(side, FIRST_SIDE)
    path = workdir / "shipped" / f"{network}-{side}" / "encoder.pt"
    if not path.exists():
        typer.echo(f"[1/3] searching first with {network} as it ships, at {side} px")
        export_as_is(network, path, side)
        export_beside(path)
    return path


def _index(encoder_path: Path, source: str, index_dir: Path, settings: Settings, reindex: bool) -> None:
    """Build the index with `encoder_path` unless the current one was built with it."""
    from index.build import build_index
    from index.pipeline import BuildOptions
    from index.vectors import backend_of
    from index.versions import IndexNotFoundError, read_manifest
    from model.common.checksum import file_sha256
    from model.embedding.runtime import load_runtime

    choice = settings.backend_choice()
    try:
        manifest = read_manifest(index_dir)
        same = backend_of(manifest.get("vector_store")) == choice.name
        current = manifest["encoder"]["sha256"] == file_sha256(encoder_path) and same
    except IndexNotFoundError:
        current = False
    if current and not reindex:
        typer.echo(f"[2/3] reusing index {index_dir} (pass --reindex to rebuild)")
        return
    typer.echo(f"[2/3] indexing {source} with {encoder_path}")
    options = BuildOptions(map_sample=FIRST_MAP_SAMPLE, backend=choice)
    build_index(load_runtime(encoder_path), source, index_dir, options=options, batch_size=FIRST_BATCH)


def _train_in_foreground(name: str, chosen: dict[str, Any], source: str, run_dir: Path, minutes: float | None) -> None:
    import time

    from model.training.config import override
    from model.training.presets import preset as get_preset
    from model.training.train import train as run_train

    cfg = override(get_preset(name), **chosen, **({"train.minutes": minutes} if minutes else {}))
    resume = (run_dir / "checkpoint.pt").exists()
    typer.echo(f"{'resuming' if resume else 'training'} a {name} encoder on {source}")
    run_train(cfg, source, run_dir, resume=resume, started=time.perf_counter())


def _image_size(encoder_path: Path) -> int:
    from model.embedding.runtime import load_runtime

    return load_runtime(encoder_path).image_size


def _api_key(settings: Settings) -> str:
    import secrets

    if settings.api_key:
        return settings.api_key
    key = secrets.token_urlsafe(24)
    typer.secho(f"API key for writes (POST/DELETE /images, POST /index/rebuild): {key}", fg=typer.colors.YELLOW)
    typer.echo("  (set LATENT_SEARCH_API_KEY to choose your own; send it as 'Authorization: Bearer <key>')")
    return key
