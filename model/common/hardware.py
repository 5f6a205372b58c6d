"""What this machine is: the facts that speed-related defaults and every reported figure depend on.

CPUs differ in ways that change which settings are fast by an order of magnitude (bf16 autocast
is native with AVX512-BF16 / AMX and emulated, ~13x slower, with AVX2 only), and a process may be
allowed fewer cores than the machine has (containers, taskset, torchrun). torch is imported
only by the functions that ask it, so the service can size its pools without it. Nothing here decides
a setting; it only describes, so that `model.training.precision` can measure and reports can say where a
number came from.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# /proc/cpuinfo flags (x86) and features (Arm) that mean bf16 matrix maths runs in hardware.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def cores_per_process() -> int:
    """This process's share of the usable cores when torchrun runs several on one machine."""
    from model.common.processes import torchrun_env

    return max(1, usable_cores() // max(1, torchrun_env().local_world_size))


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), frozenset[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def cpu_model() -> str:
    return _cpuinfo()[0]


def cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels use here (e.g. AVX2, AVX512)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware and torch's kernels may use it.

    `ATEN_CPU_CAPABILITY=avx2` (how we emulate an AVX2-only CPU on a newer one) makes torch's
    kernels ignore the hardware, so the capability is checked as well as the flags.
    """
    if cpu_capability().upper() in ("AVX2", "DEFAULT", "NO AVX"):
        return False
    return bool(_cpuinfo()[1] & NATIVE_BF16_FLAGS)


def describe(device: torch.device | str | None = None) -> dict[str, Any]:
    """The machine, as recorded with every figure (run directories, BENCHMARKS.md)."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_capability": cpu_capability(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
    }
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["gpu_bf16"] = bool(torch.cuda.is_bf16_supported())
    return info


def one_line(info: dict[str, Any]) -> str:
    """`describe()` as a short phrase for logs and tables."""
    where = f"{info['cpu']} ({info['cpu_capability']}, {'native' if info['cpu_native_bf16'] else 'no native'} bf16)"
    where += f", {info['usable_cores']} usable cores, {info['torch_threads']} torch threads"
    if "gpu" in info:
        where = f"{info['gpu']}; host {where}"
    return f"{where}, torch {info['torch']}"
