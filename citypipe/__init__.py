"""citypipe: a reproducible DVC pipeline for Cityscapes semantic segmentation."""

__version__ = "0.1.0"
