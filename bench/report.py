"""Write a benchmark's section into BENCHMARKS.md between its markers, keeping the rest."""

from __future__ import annotations

import platform
import re
from datetime import UTC, datetime
from pathlib import Path

import torch

from model.common.hardware import describe, one_line

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def machine() -> str:
    """Where a figure was measured: CPU model, its vector ISA and bf16 support, cores, GPU, torch."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    return f"{platform.node() or 'host'}: {one_line(describe(dev))}"


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def write_section(name: str, body: str, path: Path = BENCHMARKS) -> None:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
