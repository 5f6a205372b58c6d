"""Model package: SimCLR training, evaluation and embedding."""
