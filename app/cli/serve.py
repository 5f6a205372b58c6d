"""Serving: `serve`, and `demo` (train, index, then serve, on the bundled defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import DataOpt, app, auto_preset, cli_settings, configure, fail, sample_path


@app.command()
def serve(
    encoder: Annotated[Path | None, typer.Option(help="encoder.pt (default: $LATENT_SEARCH_ENCODER_PATH).")] = None,
    index: Annotated[Path | None, typer.Option(help="Index directory (default: $LATENT_SEARCH_INDEX_PATH).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve the search API and web page (settings also come from LATENT_SEARCH_* variables)."""
    configure(verbose, torch_job=False)
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
    configure(verbose)
    import shutil

    from index.build import build_index
    from index.pipeline import BuildOptions
    from index.vector_store import BackendUnavailableError
    from index.vectors import backend_of
    from index.versions import IndexNotFoundError, read_manifest
    from model.common.checksum import file_sha256
    from model.embedding.runtime import load_runtime
    from model.training.config import override
    from model.training.presets import preset as get_preset
    from model.training.train import NonFiniteLossError
    from model.training.train import train as run_train

    settings = cli_settings()
    source = data or settings.data or sample_path()
    try:
        name, chosen = auto_preset(source)
    except ValueError as exc:
        fail(exc)
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
            run_train(override(get_preset(name), **chosen), source, run_dir, resume=resume)
        checksum = file_sha256(encoder_path)
        choice = settings.backend_choice()  # LATENT_SEARCH_VECTOR_BACKEND / _MILVUS_URI
        try:
            manifest = read_manifest(index_dir)
            same_backend = backend_of(manifest.get("vector_store")) == choice.name
            current = manifest["encoder"]["sha256"] == checksum and same_backend
        except IndexNotFoundError:
            current = False
        if current and not reindex:
            typer.echo(f"[2/3] reusing index {index_dir} (pass --reindex to rebuild)")
        else:
            typer.echo(f"[2/3] indexing {source}")
            build_index(load_runtime(encoder_path), source, index_dir, options=BuildOptions(backend=choice))
    except (FileNotFoundError, FileExistsError, ValueError, NonFiniteLossError, BackendUnavailableError) as exc:
        fail(exc)
        return
    if no_serve:
        typer.echo(f"done: serve later with `latent-search serve --encoder {encoder_path} --index {index_dir}`")
        return
    import secrets

    api_key = settings.api_key or secrets.token_urlsafe(24)
    if settings.api_key is None:
        typer.secho(f"API key for writes (POST/DELETE /images, POST /index/rebuild): {api_key}", fg=typer.colors.YELLOW)
        typer.echo("  (set LATENT_SEARCH_API_KEY to choose your own; send it as 'Authorization: Bearer <key>')")
    typer.echo("[3/3] starting the server")
    _serve(encoder_path, index_dir, host, port, api_key)
