"""What every command shares: the Typer app, logging and threads, the data path, errors."""

from __future__ import annotations

import logging
from typing import Annotated, Any, NoReturn

import typer

from app.config import Settings

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


def cli_settings() -> Settings:
    """The settings (app.config), read afresh: a command sees the environment it was started in."""
    return Settings()


def configure(verbose: bool, threads: int | None = None, torch_job: bool = True) -> None:
    """Logging, and for jobs that run torch, its thread count (the service sets its own)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not torch_job:
        return
    import torch

    from model.common.hardware import cores_per_process

    # Set on purpose: torch's default counts the machine's cores, not the ones this process may
    # use (containers, taskset), and under torchrun the processes of one machine share them.
    torch.set_num_threads(threads or cores_per_process())


def is_main_process() -> bool:
    """False in the processes torchrun starts besides rank 0: they print nothing."""
    from model.common.processes import torchrun_env

    return torchrun_env().rank == 0


def data_path(data: str | None) -> str:
    path = data or cli_settings().data
    if not path:
        raise typer.BadParameter(
            f"pass --data PATH (a folder of images or a .tar/.tar.gz of one) or set {DATA_ENV}; "
            "no images at hand? `latent-search sample` fetches a sample collection",
            param_hint="--data",
        )
    return path


def sample_path() -> str:
    """The cached sample collection, fetched (with a progress bar) and converted on first use."""
    from tqdm import tqdm

    from model.collections.sample import CIFAR10, SampleUnavailableError, converted_path, ensure_sample

    settings = cli_settings()
    cache = settings.sample_cache
    if converted_path(CIFAR10, cache).exists():
        return str(converted_path(CIFAR10, cache))
    typer.echo(f"no --data given: fetching the sample collection (CIFAR-10, {CIFAR10.size or 0:,} bytes) once")
    with tqdm(total=CIFAR10.size, unit="B", unit_scale=True, desc="download", dynamic_ncols=True) as bar:

        def progress(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            path = ensure_sample(cache=cache, url=settings.sample_url, progress=progress)
        except SampleUnavailableError as exc:
            bar.close()
            fail(exc)
    typer.echo(f"sample collection ready: {path}")
    return str(path)


def auto_preset(source: str) -> tuple[str, dict[str, Any]]:
    """(preset name, the recipe fields chosen from the collection) for `source`."""
    import torch

    from model.collections.survey import choose_preset, embed_side, inspect_collection

    facts = inspect_collection(source)
    name, why = choose_preset(facts, torch.cuda.is_available())
    if is_main_process():
        typer.echo(f"preset {name}: {why} (from {facts.sampled} images; --preset to choose another)")
    chosen = {"encoder.image_size": embed_side(facts)} if name.startswith("pretrained-") else {}
    return name, chosen


def fail(exc: BaseException) -> NoReturn:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
