"""`latent-search index ...`: build, inspect and export search indexes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import DataOpt, app, cli_settings, configure, data_path, fail
from index.atlas import DEFAULT_MAP_SAMPLE
from index.plan import DEFAULT_MEMORY_BUDGET, DEFAULT_RECALL_TARGET
from index.sync import DEFAULT_MAX_REMOVED
from model.embedding.runtime import Runtime

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
    map_sample: Annotated[
        int, typer.Option(help="Images on the collection's 2-D map (a neighbour-graph layout of a sample; 0: no map).")
    ] = DEFAULT_MAP_SAMPLE,
    backend: Annotated[
        str | None,
        typer.Option(help="Where the vectors live: faiss (default) or milvus [env LATENT_SEARCH_VECTOR_BACKEND]."),
    ] = None,
    milvus_uri: Annotated[
        str | None,
        typer.Option(help="Milvus Lite file or http://host:19530 (default OUT/milvus.db) [env ..._MILVUS_URI]."),
    ] = None,
    batch_size: Annotated[int, typer.Option()] = 256,
    device: Annotated[str | None, typer.Option()] = None,
    threads: Annotated[int | None, typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Embed a collection with f and publish a cosine index (FAISS or Milvus) plus catalog."""
    configure(verbose, threads)
    from index.build import build_index
    from index.pipeline import BuildOptions
    from model.common.processes import setup, teardown
    from model.embedding.runtime import load_runtime

    if not 0 < target_recall <= 1:
        fail(ValueError("--target-recall must be in (0, 1]"))
    created = False
    try:
        # Under torchrun: every process embeds a share on its own device; rank 0 builds.
        _, dev, created = setup(device)
        enc = load_runtime(encoder, runtime, str(dev))
        choice = cli_settings().backend_choice(backend, milvus_uri)
        options = BuildOptions(factory, memory_budget_mb * 2**20, target_recall, max(0, map_sample), choice)
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
        f"published {out}/versions/{report.version}: {m['count']} images, {m['index_type']} "
        f"({m.get('vector_store', {}).get('backend', 'faiss')}), "
        f"search {m['search_params'] or 'exact'}, recall@10 {m['recall_at_10']:.3f}, "
        f"{m['skipped_unreadable']} unreadable, {m['duplicates']} duplicates, {m['seconds']['total']:.0f} s"
    )


@index_app.command("sync")
def index_sync(
    encoder: Annotated[Path, typer.Option(help="The encoder the index was built with.")],
    data: Annotated[Path, typer.Option(help="The folder of images to follow.")],
    index: Annotated[Path, typer.Option("--index", help="Index directory.")] = Path("indexes/default"),
    force: Annotated[
        bool, typer.Option(help="Go ahead even if the folder is empty or more than --max-removed would go.")
    ] = False,
    max_removed: Annotated[
        float, typer.Option(help="Largest share of the index one sync may remove without --force.")
    ] = DEFAULT_MAX_REMOVED,
    chunk: Annotated[int, typer.Option(help="Images embedded and journalled together.")] = 64,
    runtime: Annotated[Runtime, typer.Option(help="What runs the encoder: auto (ONNX when exported), torch, onnx.")] = (
        Runtime.AUTO
    ),
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Bring an index in step with a folder: add new images, remove deleted ones, re-embed changed
    ones, follow renamed or moved ones; only what changed is read. Safe by default (see
    index/sync.py); while `serve` runs on the index, use POST /index/sync instead."""
    configure(verbose)
    from index.folder import STATE_FILE, FileStates, SyncRefusedError
    from index.images import ImageStore
    from index.store import load
    from index.sync import apply_sync, check_safe, plan_sync
    from model.embedding.runtime import load_runtime

    if not 0 <= max_removed <= 1 or chunk < 1:
        fail(ValueError("--max-removed must be in [0, 1] and --chunk >= 1"))
    try:
        enc = load_runtime(encoder, runtime, "cpu")
        opened = load(index, encoder_checksum=enc.checksum, writable=True)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        fail(exc)
        return
    states = FileStates(index / STATE_FILE)
    try:
        plan = plan_sync(opened, data, states, allow_empty=force)
        check_safe(plan, opened.count, max_removed, force)
        typer.echo(f"plan: {json.dumps(plan.summary())}")
        done = {"moved": 0, "added": 0, "removed": 0}

        def step(what: str, n: int) -> None:
            done[what] += n
            typer.echo(f"{what} {done[what]:,}", err=True)

        report = apply_sync(opened, plan, data, enc, states, ImageStore(index / "images"), chunk, step)
    except SyncRefusedError as exc:
        fail(exc)
        return
    finally:
        states.close()
        opened.close()
    typer.echo(f"synced {index} with {data}: {json.dumps(report.summary)}")


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


@app.command("duplicates")
def duplicates(
    path: Annotated[Path, typer.Argument(help="Index directory.")],
    threshold: Annotated[
        float | None,
        typer.Option(help="Cosine at or above which two images are near duplicates (default: measured, see README)."),
    ] = None,
    encoder: Annotated[
        Path | None, typer.Option(help="Encoder to measure the default threshold with (default: the index's).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write every group to this .json or .csv file.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Find groups of near-duplicate and byte-identical images in an index."""
    configure(verbose, None)
    from index.calibrate import calibrate, pixel_check, stored_thumbnails
    from index.duplicates import PixelCheck, TooManyPairsError, find_duplicates, write_groups
    from index.images import ImageStore
    from index.store import load
    from index.versions import IndexNotFoundError
    from model.embedding.runtime import load_runtime

    if out is not None and out.suffix not in (".json", ".csv"):
        fail(ValueError(f"--out must end in .json or .csv, not {out.suffix!r}"))
    if threshold is not None and not -1 <= threshold <= 1:
        fail(ValueError("--threshold is a cosine: between -1 and 1"))
    try:
        opened = load(path, store_settings=cli_settings().store_settings)
    except IndexNotFoundError as exc:
        fail(exc)
        return
    check: PixelCheck | None = None
    try:
        if threshold is None:
            encoder = encoder or Path(str(opened.manifest.encoder.get("path", "")))
            if not encoder.is_file():
                raise FileNotFoundError(
                    f"the index's encoder {str(encoder)!r} is not here to measure a threshold with: "
                    "give --threshold, or --encoder with the encoder the index was built with"
                )
            store = ImageStore(path / "images")
            found = calibrate(load_runtime(encoder, "auto", "cpu"), opened, store)
            threshold = found.threshold
            check = pixel_check(found, stored_thumbnails(opened, store))
            typer.echo(
                f"threshold {threshold} measured: 95 % of resized / re-encoded / cropped copies score >= "
                f"{found.copy_p5}, 1 image in 20 has a neighbour >= {found.neighbour_p95}"
                + (
                    f"; pairs from {found.candidate} join when their thumbnails correlate >= {found.pixel}"
                    if check
                    else ""
                )
            )
            if found.warning:
                typer.echo(f"warning: {found.warning}")
        report = find_duplicates(opened, threshold, check)
        rows = opened.rows([m.id for g in report.groups for m in g.members])
    except (TooManyPairsError, FileNotFoundError, ValueError) as exc:
        fail(exc)
        return
    finally:
        opened.close()
    in_groups = sum(g.size for g in report.groups)
    typer.echo(
        f"{len(report.groups)} group(s), {in_groups} files in them, among {report.images} images "
        f"(cosine >= {threshold}) in {report.seconds:.1f} s"
    )
    for group in report.groups[:5]:
        kind = "byte-identical copies" if group.exact_only else "near duplicates"
        names = ", ".join(rows[m.id].uri for m in group.members[:4] if m.id in rows)
        typer.echo(f"  {group.size:>5} {kind}: {names}{' ...' if group.size > 4 else ''}")
    if out is not None:
        write_groups(report, rows, out)
        typer.echo(f"wrote {out}")
