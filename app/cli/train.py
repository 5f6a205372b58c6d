"""Commands of the offline job: train, eval, a pretrained encoder, its ONNX export, the sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import DataOpt, app, auto_preset, configure, data_path, fail, is_main_process, sample_path
from model.config import ARCHS, LOSSES, OPTIMIZERS
from model.presets import PRESETS


@app.command()
def train(
    data: DataOpt = None,
    out: Annotated[Path, typer.Option(help="Run directory (config, metrics, checkpoints, encoder.pt).")] = Path(
        "runs/default"
    ),
    preset: Annotated[
        str,
        typer.Option(
            help="auto (chosen from the collection) | "
            + " | ".join(PRESETS)
            + " (pretrained-*: adapts an ImageNet network)"
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
    optimizer: Annotated[str | None, typer.Option(help=" | ".join(OPTIMIZERS))] = None,
    loss: Annotated[str | None, typer.Option(help=" | ".join(LOSSES) + " (supcon needs labels)")] = None,
    weight_decay: Annotated[float | None, typer.Option()] = None,
    warmup_epochs: Annotated[float | None, typer.Option()] = None,
    arch: Annotated[str | None, typer.Option(help=" | ".join(ARCHS))] = None,
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
    rival: Annotated[
        str | None,
        typer.Option(help="Pretrained network a run from scratch must beat on held-out copies, or 'none'."),
    ] = None,
    amp: Annotated[
        bool | None, typer.Option("--amp/--no-amp", help="bf16 autocast (default: timed on this machine).")
    ] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | cuda:N (default: cuda if present).")] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any recipe field, e.g. --set train.distill=1.0 (repeatable)."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train a SimCLR encoder on unlabelled images."""
    configure(verbose, threads)
    from model.config import override, parse_sets
    from model.presets import preset as get_preset
    from model.train import NonFiniteLossError
    from model.train import train as run_train

    try:
        source = data_path(data)
        chosen: dict[str, Any] = {}
        if preset == "auto" and not resume:
            preset, chosen = auto_preset(source)
        cfg = get_preset("cpu-small" if preset == "auto" else preset)  # a resumed run reads its own config
        cfg = override(cfg, **chosen)
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
                "train.rival": "" if rival == "none" else rival,
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
    from model.evaluate import evaluate_encoder

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
    from model.pretrained import export_as_is
    from model.release import export_beside

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
    from model.onnx_export import export_onnx

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
