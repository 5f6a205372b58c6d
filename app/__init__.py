"""App package: the FastAPI service and the CLI."""
