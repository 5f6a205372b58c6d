"""An encoder that lets go of its weights and buffers when nobody has used it for a while.

A served encoder holds its runtime's session, weights and the buffers its largest batch
needed (ONNX Runtime keeps an arena sized for the largest batch it ran) for as long as the
process lives. `IdleUnloading` wraps the loader instead: the first `embed_pixels` loads the
encoder, every call notes the time, and a watcher thread drops it once it has been idle for
`idle_s` seconds (then asks the C allocator to hand freed memory back to the system). The next
call loads it again, a cold start of a second or so. What identifies the encoder (checksum,
size, dimension) is read at the first load and kept, so nothing else waits for a reload.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from model.embedding.runtime import EncoderRuntime

LOG = logging.getLogger(__name__)


def give_back_memory() -> None:
    """Collect garbage and ask glibc to return free heap pages to the system (no-op elsewhere)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: not glibc
            ctypes.CDLL(name).malloc_trim(0)


class IdleUnloading:
    """An EncoderRuntime loaded on demand and unloaded after `idle_s` seconds without a call."""

    def __init__(self, load: Callable[[], EncoderRuntime], idle_s: float, first: EncoderRuntime | None = None) -> None:
        if idle_s <= 0:
            raise ValueError("idle_s must be > 0")
        self._load, self.idle_s = load, idle_s
        self._lock = threading.Lock()
        self._encoder: EncoderRuntime | None = first or load()
        self.loads, self.unloads = 1, 0
        encoder = self._encoder
        self.path, self.checksum = encoder.path, encoder.checksum
        self.feature_dim, self.runtime = encoder.feature_dim, encoder.runtime
        self._image_size, self._arch, self._config = encoder.image_size, encoder.arch, encoder.config_dict()
        self._last_used = time.monotonic()
        self._active = 0  # calls running now: never unloaded under them
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="encoder-idle", daemon=True)
        self._watcher.start()

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def arch(self) -> str:
        return self._arch

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def config_dict(self) -> dict[str, Any]:
        return dict(self._config)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._encoder is None:
                started = time.perf_counter()
                self._encoder = self._load()
                self.loads += 1
                LOG.info("encoder loaded again after an idle unload (%.1f s)", time.perf_counter() - started)
            encoder = self._encoder
            self._active += 1
        try:  # outside the lock: calls may run together, as they may on the runtime itself
            return encoder.embed_pixels(pixels)
        finally:
            with self._lock:
                self._active -= 1
                self._last_used = time.monotonic()

    def unload_if_idle(self) -> bool:
        """Drop the encoder if it has been idle for idle_s; True if it was dropped now."""
        with self._lock:
            if self._encoder is None or self._active or time.monotonic() - self._last_used < self.idle_s:
                return False
            self._encoder = None
            self.unloads += 1
        give_back_memory()
        LOG.info("encoder unloaded after %.0f s idle", self.idle_s)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(min(5.0, self.idle_s / 4)):
            self.unload_if_idle()

    def close(self) -> None:
        self._stop.set()
