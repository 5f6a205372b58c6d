"""IdleUnloading: loaded on demand, dropped after the idle time, never under a running call."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from model.embedding.runtime import load_runtime
from model.embedding.unloading import IdleUnloading


def test_an_idle_encoder_is_dropped_and_reloaded_on_the_next_call(tiny_encoder: Path) -> None:
    loads = []

    def load() -> Any:
        loads.append(1)
        return load_runtime(tiny_encoder, "torch", "cpu")

    wrapped = IdleUnloading(load, idle_s=0.2)
    pixels = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    first = wrapped.embed_pixels(pixels)
    deadline = time.monotonic() + 10
    while wrapped.loaded and time.monotonic() < deadline:  # the watcher drops it
        time.sleep(0.05)
    assert not wrapped.loaded and wrapped.unloads == 1
    assert wrapped.image_size == 32 and wrapped.checksum  # known without a reload
    assert len(loads) == 1
    np.testing.assert_allclose(wrapped.embed_pixels(pixels), first, atol=1e-6)
    assert len(loads) == 2 and wrapped.loaded
    wrapped.close()


class Slow:
    path, checksum, feature_dim, runtime, image_size, arch = "slow", "x", 2, "test", 8, "slow"

    def config_dict(self) -> dict[str, Any]:
        return {}

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        time.sleep(0.6)
        return np.zeros((len(pixels), 2), np.float32)


def test_a_running_call_keeps_the_encoder_loaded() -> None:
    wrapped = IdleUnloading(Slow, idle_s=0.1)
    wrapped.close()  # no watcher: unload_if_idle is called by hand
    call = threading.Thread(target=wrapped.embed_pixels, args=(np.zeros((1, 8, 8, 3), np.uint8),))
    time.sleep(0.2)  # idle long enough before the call
    call.start()
    time.sleep(0.3)  # the call has run longer than idle_s
    assert not wrapped.unload_if_idle() and wrapped.loaded
    call.join()
    time.sleep(0.15)
    assert wrapped.unload_if_idle() and not wrapped.loaded
