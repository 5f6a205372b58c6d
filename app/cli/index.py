"""`latent-search index ...`: build, inspect and export search indexes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import DataOpt, app, configure, data_path, fail
from index.plan import DEFAULT_MEMORY_BUDGET, DEFAULT_RECALL_TARGET
from model.runtime import Runtime

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
    configure(verbose, threads)
    from index.build import build_index
    from index.pipeline import BuildOptions
    from model.distributed import setup, teardown
    from model.runtime import load_runtime

    if not 0 < target_recall <= 1:
        fail(ValueError("--target-recall must be in (0, 1]"))
    created = False
    try:
        # Under torchrun: every process embeds a share on its own device; rank 0 builds.
        _, dev, created = setup(device)
        enc = load_runtime(encoder, runtime, str(dev))
        options = BuildOptions(factory, memory_budget_mb * 2**20, target_recall)
        report = build_index(enc, data_path(data), out, options=options, batch_size=batch_size)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        fail(exc)
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
        fail(exc)


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
        fail(exc)
        return
    typer.echo(f"wrote {n} embeddings to {out}")
