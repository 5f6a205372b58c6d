"""`python -m app.cli` (how torchrun starts the command)."""

from app.cli import main

main()
