"""Helpers every part may use: atomic file writes, checksums, what the CPU offers, the torchrun
process group, the spread of a set of vectors. Imports nothing from the rest of `model`."""
