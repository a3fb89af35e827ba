"""Datasets for single-view reconstruction: procedural shapes, TFDS builders and loaders."""
