"""citypipe: a reproducible DVC pipeline for Cityscapes semantic segmentation."""
import os

# Idle OpenMP threads sleep instead of spinning. libgomp reads this once, when torch loads it, so it is set
# here, before any torch import of a stage script or the CLI. It changes scheduling, never the split of
# work, so no bits (same weight hash, bench_cpu_pinning.py and tests/test_determinism.py); on a shared
# 2-core machine spinning threads took the cores the working ones needed: the pinned train step ran 1.7x
# faster with it at load 10-15 (bench_cpu_pinning.py). A value set in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
