"""Commands of the offline job: train, eval, a pretrained encoder, its ONNX export, the sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import DataOpt, app, auto_preset, configure, data_path, fail, is_main_process, sample_path
from model.training.presets import PRESETS


@app.command()
def train(
    data: DataOpt = None,
    out: Annotated[Path, typer.Option(help="Run folder: config, metrics, checkpoints, encoder.pt.")] = Path(
        "runs/default"
    ),
    preset: Annotated[str, typer.Option(help="auto (chosen from the collection) | " + " | ".join(PRESETS))] = "auto",
    minutes: Annotated[
        float | None, typer.Option(help="Wall time of the whole command; training fills what is left.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs instead of a time budget.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in --out exactly.")] = False,
    init: Annotated[
        str | None, typer.Option(help="Start f from a shipped network (efficientnet_lite0) or '' (scratch).")
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="Side of the images f sees (and of the views).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch and process (2 views each).")] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="SECTION.NAME=VALUE",
            help="Any recipe field (encoder.*, augment.*, train.*), e.g. --set train.lr=0.3; repeatable. "
            "`latent-search recipe` lists them.",
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | cuda:N (default: cuda if present).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    stop_after_steps: Annotated[int | None, typer.Option(help="Checkpoint and stop at this step.", hidden=True)] = None,
    stop_after_minutes: Annotated[
        float | None, typer.Option(help="Checkpoint and stop after this much training (resumable).", hidden=True)
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train a SimCLR encoder on unlabelled images (or adapt a shipped one), then choose the best."""
    configure(verbose, threads)
    from model.training.config import override, parse_sets
    from model.training.presets import preset as get_preset
    from model.training.train import NonFiniteLossError
    from model.training.train import train as run_train

    try:
        source = data_path(data)
        chosen: dict[str, Any] = {}
        if preset == "auto" and not resume:
            preset, chosen = auto_preset(source)
        cfg = get_preset("cpu-small" if preset == "auto" else preset)  # a resumed run reads its own config
        named = {
            "train.epochs": epochs,
            "train.minutes": 0.0 if epochs is not None and minutes is None else minutes,
            "train.batch_size": batch_size,
            "encoder.init": init,
            "encoder.image_size": image_size,
            "augment.crop_size": image_size,
        }
        cfg = override(override(cfg, **chosen), **named)
        cfg = override(cfg, **parse_sets(cfg, sets or []))
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
        fail(exc)
        return
    if not is_main_process():
        return
    state = "finished" if result.finished else f"stopped at step {result.step}/{result.total_steps}"
    knn = f", kNN top-1 {100 * result.knn_top1:.1f} %" if result.knn_top1 is not None else ""
    typer.echo(f"{state} in {result.seconds / 60:.1f} min of training: loss {result.loss:.3f}{knn}")
    typer.echo(f"encoder: {result.encoder_path}")
    if not result.finished:
        typer.echo(f"continue with: latent-search train --out {out} --resume --data ...")
    typer.echo(f"next: latent-search eval --encoder {result.encoder_path} --data ...")


@app.command()
def recipe(
    preset: Annotated[str, typer.Argument(help=" | ".join(PRESETS))] = "cpu-small",
) -> None:
    """Every recipe field a `train --set` can change, with the preset's value."""
    from model.training.config import as_set_value
    from model.training.presets import preset as get_preset

    try:
        cfg = get_preset(preset)
    except ValueError as exc:
        fail(exc)
        return
    for section, fields in cfg.to_dict().items():
        if isinstance(fields, dict):
            for name, value in fields.items():
                typer.echo(f"{section}.{name} = {as_set_value(value)}")


@app.command("eval")
def evaluate(
    encoder: Annotated[Path, typer.Option(help="encoder.pt from a training run.")],
    data: DataOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for eval.json and plots (default: beside the encoder).")
    ] = None,
    k: Annotated[int, typer.Option(help="Neighbours for kNN.")] = 200,
    map_method: Annotated[str, typer.Option(help="tsne | pca")] = "tsne",
    candidates: Annotated[
        bool, typer.Option(help="Also kNN of the networks the run compared and did not keep (candidates/).")
    ] = True,
    device: Annotated[str | None, typer.Option()] = None,
    threads: Annotated[int | None, typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """kNN accuracy, linear probe and plots of a trained encoder on labelled data."""
    configure(verbose, threads)
    from model.evaluation.evaluate import evaluate_encoder

    try:
        result: dict[str, Any] = evaluate_encoder(
            encoder, data_path(data), out, k=k, map_method=map_method, device=device, candidates=candidates
        )
    except (FileNotFoundError, ValueError) as exc:
        fail(exc)
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
    if "choice" in result:
        typer.echo(f"the run's choice: {result['choice'].get('message', result['choice'].get('chosen'))}")
    for name, other in result.get("candidates", {}).items():
        typer.echo(
            f"compared by the run and not kept: {name} ({other['image_size']} px): kNN top-1 "
            f"{other['knn_top1']:.4f}, 1-NN {other['knn1_top1']:.4f}"
        )
    typer.echo(f"wrote {Path(result['plots'][0]).parent / 'eval.json'} and {', '.join(result['plots'])}")


@app.command("pretrained")
def pretrained_encoder(
    out: Annotated[Path, typer.Option(help="Where to write the encoder.pt.")],
    name: Annotated[str, typer.Option(help="Starting point: efficientnet_lite0.")] = "efficientnet_lite0",
    image_size: Annotated[int | None, typer.Option(help="Side f embeds at (default: the native 224).")] = None,
) -> None:
    """Write a pretrained network as it is (no training) as an encoder.pt to index and serve."""
    configure(False)
    from model.embedding.pretrained import export_as_is
    from model.training.release import export_beside

    try:
        path = export_as_is(name, out, image_size)
    except (FileNotFoundError, ValueError) as exc:
        fail(exc)
    export_beside(path)
    typer.echo(f"encoder: {path}\nnext: latent-search index build --encoder {path} --data ...")


@app.command("export-onnx")
def export_onnx_command(
    encoder: Annotated[Path, typer.Argument(help="The encoder.pt to convert.")],
    out: Annotated[Path | None, typer.Option(help="Where to write it (default: encoder.onnx beside it).")] = None,
) -> None:
    """Convert an encoder.pt to ONNX (what the service runs, with ONNX Runtime).

    Training writes encoder.onnx by itself; this converts an encoder from an earlier version or
    one whose export failed. Indexes built with the encoder.pt are served by its export as they are.
    """
    configure(False)
    from model.embedding.onnx_export import export_onnx

    try:
        path = export_onnx(encoder, out)
    except (FileNotFoundError, ValueError) as exc:
        fail(exc)
    typer.echo(f"wrote {path} (serve it: LATENT_SEARCH_ENCODER_PATH={path}, or keep it beside {encoder})")


@app.command()
def sample() -> None:
    """Fetch the sample collection (CIFAR-10) into the cache now, for a machine that goes offline later."""
    configure(False)
    typer.echo(sample_path())
