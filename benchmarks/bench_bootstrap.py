"""evaluate's bootstrap interval (citypipe.evaluation.bootstrap, vectorised: one (R, N) @ (N, 3K) product)
vs the obvious loop (sum the resampled images' matrices, score it), same draws; both intervals are checked
to agree. This holds the speed claim that tests/test_bootstrap.py's removed `test_fast_enough` asserted
with a wall clock (1000 resamples of 500 images well under 0.5 s).

    python benchmarks/bench_bootstrap.py [--images 15 100 500] [--resamples 1000]
"""
import argparse

import numpy as np
from common import machine, median_seconds, table

from citypipe.evaluation.bootstrap import bootstrap_interval

K = 19


def per_image_confusions(n: int, seed: int) -> np.ndarray:
    """(n, K, K) counts: mostly diagonal, image-to-image variation, one class never present."""
    rng = np.random.default_rng(seed)
    conf = rng.poisson(rng.uniform(5, 60, size=(n, K, K))).astype(np.int64)
    conf[:, np.arange(K), np.arange(K)] += rng.integers(100, 3000, size=(n, K))
    conf[:, 17, :] = conf[:, :, 17] = 0
    return conf


def loop_interval(conf: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """mIoU interval, one resample at a time: the same draws as the library, the summed matrix scored per class."""
    draws = np.random.default_rng(seed).integers(0, conf.shape[0], size=(resamples, conf.shape[0]))
    values = []
    for row in draws:
        mat = conf[row].sum(axis=0).astype(np.float64)
        tp = np.diag(mat)
        union = mat.sum(0) + mat.sum(1) - tp
        values.append(np.mean(tp[union > 0] / union[union > 0]))
    low, high = np.quantile(np.array(values), [0.025, 0.975])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[15, 100, 500])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for n in args.images:
        conf = per_image_confusions(n, seed=7)
        ours = bootstrap_interval(conf, "miou", args.resamples, seed=0)
        reference = loop_interval(conf, args.resamples, seed=0)
        assert np.allclose(ours, reference, rtol=1e-12), (ours, reference)
        fast = median_seconds(lambda: bootstrap_interval(conf, "miou", args.resamples, seed=0), args.repeats, 1)
        slow = median_seconds(lambda: loop_interval(conf, args.resamples, seed=0), max(1, args.repeats // 2), 1)
        rows.append((n, args.resamples, f"{fast * 1e3:.1f}", f"{slow * 1e3:.0f}", f"{slow / fast:.0f}x",
                     f"{ours[0]:.4f}-{ours[1]:.4f}"))
    print(f"bootstrap mIoU interval, {K} classes; {machine()}")
    print(table(rows, ("images", "resamples", "ours ms", "loop ms", "speed-up", "interval (both)")))


if __name__ == "__main__":
    main()
