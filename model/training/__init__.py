"""The SimCLR training job (Chen et al. 2020) and the choice of encoder after it.

Recipe and presets (config, presets), data feeds (feed), augmentation, the model f + g (simclr),
losses, optimisers, data parallelism (distributed), speed settings and the time budget (precision,
trial, budget, pace), the run's state and folder (state, checkpoint, run_dir), the check between
epochs (monitor), the loop (train), and what a run publishes (adapt, release).
May import every other part of `model`; only the CLI imports this package.
"""
