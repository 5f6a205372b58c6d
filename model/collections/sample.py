"""The sample collection for people with no images at hand: CIFAR-10, fetched once and cached.

`ensure_sample()` returns a local archive the rest of the project reads like any collection
(`train/<class>/*.png`, `test/<class>/*.png` in an uncompressed tar). The first call downloads the
python-pickle release of CIFAR-10 from its canonical location into the user's cache folder
(`$LATENT_SEARCH_CACHE`, else `$XDG_CACHE_HOME/latent-search`, else `~/.cache/latent-search`),
verifies its pinned MD5 (the checksum torchvision pins for the same file), and converts it once;
later calls touch no network.

A download goes to `NAME.part` and resumes from there with an HTTP range request after an
interruption (a server that ignores the range gets a fresh start); the archive is renamed into
place only once its checksum matches, and the converted tar is written beside its final name and
renamed, so no half-written file is ever taken for a good one.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

LOG = logging.getLogger(__name__)

CHUNK = 1 << 20

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


@dataclass(frozen=True)
class SampleSpec:
    name: str
    url: str
    filename: str  # the archive's name in the cache folder
    md5: str
    size: int | None  # bytes, when known


CIFAR10 = SampleSpec(
    name="cifar10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    filename="cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    size=170_498_071,
)


class SampleUnavailableError(RuntimeError):
    """The sample could not be fetched or verified; the message says how to go on without it."""


def converted_path(spec: SampleSpec, cache: Path) -> Path:
    """Where the converted sample lives in the cache folder (app.config: LATENT_SEARCH_CACHE)."""
    return cache / f"{spec.name}-png.tar"


def ways_forward(spec: SampleSpec, cache: Path) -> str:
    return (
        "Three ways to go on: (1) pass your own images, `--data ~/Pictures` (a folder, or a .tar/.tar.gz of one); "
        "(2) set LATENT_SEARCH_DATA to such a folder or archive; "
        f"(3) download {spec.url} on a machine with internet and copy it to {cache / spec.filename} "
        f"(MD5 {spec.md5}); the next run checks and uses it."
    )


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def download(spec: SampleSpec, dest: Path, *, url: str | None = None, progress: Progress | None = None) -> Path:
    """Fetch `spec` to `dest` (resuming `dest.part`), verify its MD5, and rename it into place."""
    url = url or spec.url
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the range is past the end: the part is not this file; start over
            part.unlink()
            return download(spec, dest, url=url, progress=progress)
        raise SampleUnavailableError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SampleUnavailableError(f"could not download {url}: {getattr(exc, 'reason', exc)}") from exc
    with response:
        resumed = response.status == 206
        if have and not resumed:
            LOG.info("the server ignored the resume request; downloading %s from the start", url)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else spec.size
        done = have
        try:
            with part.open("ab" if resumed else "wb") as fh:
                while block := response.read(CHUNK):
                    fh.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:  # a cut connection: keep the part for the next try
            raise SampleUnavailableError(
                f"the download of {url} broke off after {done:,} bytes ({exc}); run the command again to resume"
            ) from exc
    if total is not None and done < total:
        raise SampleUnavailableError(
            f"the download of {url} stopped after {done:,} of {total:,} bytes; run the command again to resume"
        )
    actual = md5_of(part)
    if actual != spec.md5:
        part.unlink()
        raise SampleUnavailableError(
            f"the file downloaded from {url} has MD5 {actual}, not the expected {spec.md5}; it was deleted"
        )
    part.replace(dest)
    return dest


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10's batches (dicts of numpy arrays and lists) and nothing that runs code."""

    ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a sample archive")
        return super().find_class(module, name)


def _load_batch(raw: bytes) -> dict[bytes, Any]:
    batch: dict[bytes, Any] = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    return batch


def convert(archive: Path, out: Path) -> Path:
    """The pickle release -> an uncompressed tar of PNGs: {train,test}/<class>/<n>.png."""
    members: dict[str, bytes] = {}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            fh = tar.extractfile(member) if member.isfile() else None
            if fh is not None:
                members[Path(member.name).name] = fh.read()
    if "batches.meta" not in members:
        raise SampleUnavailableError(f"{archive} is not the CIFAR-10 python archive (no batches.meta)")
    names = [n.decode() for n in _load_batch(members["batches.meta"])[b"label_names"]]
    batches = [("train", k) for k in sorted(members) if k.startswith("data_batch_")] + [("test", "test_batch")]
    tmp = out.with_name(out.name + ".tmp")
    count = 0
    with tarfile.open(tmp, "w") as tar:
        for split, key in batches:
            batch = _load_batch(members[key])
            pixels = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            for image, label in zip(pixels, batch[b"labels"], strict=True):
                buf = io.BytesIO()
                Image.fromarray(image).save(buf, format="PNG")
                info = tarfile.TarInfo(f"{split}/{names[label]}/{count:05d}.png")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
                count += 1
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    tmp.replace(out)
    LOG.info("converted %s: %d images into %s", archive.name, count, out)
    return out


def ensure_sample(
    spec: SampleSpec = CIFAR10,
    *,
    cache: Path,
    url: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """The converted sample, fetching and converting it first where the cache lacks it."""
    out = converted_path(spec, cache)
    if out.exists():
        return out
    archive = cache / spec.filename
    try:
        if archive.exists() and md5_of(archive) != spec.md5:
            raise SampleUnavailableError(
                f"{archive} is in the cache but its MD5 is not {spec.md5}; delete it to download it again"
            )
        if not archive.exists():
            download(spec, archive, url=url, progress=progress)
        return convert(archive, out)
    except SampleUnavailableError as exc:
        raise SampleUnavailableError(f"{exc}.\n{ways_forward(spec, cache)}") from exc
