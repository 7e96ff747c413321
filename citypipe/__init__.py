"""citypipe: a reproducible DVC pipeline for Cityscapes semantic segmentation."""
