"""The `latent-search` command. Thin: it parses options, calls the library, prints results.

One module a group of commands: app.cli.train (the offline job), app.cli.index (indexes),
app.cli.serve (serving and the demo); app.cli.common holds what they share.
"""

from __future__ import annotations

import sys

from app.cli import index, serve, train
from app.cli.common import app

__all__ = ["app", "index", "main", "serve", "train"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
