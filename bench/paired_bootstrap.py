"""The paired F1-difference bootstrap: harness.paired versus scipy.stats.bootstrap, side by side.

Both resample the rows of two systems' predictions jointly (`paired=True` in scipy) and give a
95% percentile interval of F1(b) - F1(a). scipy draws index arrays and evaluates the statistic
on (resamples x rows) arrays; harness.paired reduces each row to its TP/FP/FN pattern and draws
multinomial counts of the distinct patterns. Prints both intervals, both times and the ratio.

    python bench/paired_bootstrap.py [--rows 1300] [--resamples 2000]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pandas as pd
import scipy
from scipy import stats

from harness.paired import align, paired_f1_difference


def f1_difference(labels: np.ndarray, a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    def f1(predicted: np.ndarray) -> np.ndarray:
        tp = np.sum((predicted == 1) & (labels == 1), axis=axis)
        wrong = np.sum(predicted != labels, axis=axis)
        return np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)

    return f1(b) - f1(a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1300)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, args.rows)
    a = np.where(rng.random(args.rows) < 0.80, labels, 1 - labels)
    b = np.where(rng.random(args.rows) < 0.83, labels, 1 - labels)
    frame = pd.DataFrame({"id": np.arange(args.rows), "label": labels})

    timings = {"scipy.stats.bootstrap": [], "harness.paired": []}
    for _ in range(args.repeats):
        started = time.perf_counter()
        result = stats.bootstrap((labels, a, b), f1_difference, paired=True, vectorized=True,
                                 n_resamples=args.resamples, method="percentile",
                                 random_state=np.random.default_rng(1))
        timings["scipy.stats.bootstrap"].append(time.perf_counter() - started)
        started = time.perf_counter()
        ours = paired_f1_difference(align(frame.assign(prediction=a), frame.assign(prediction=b)),
                                    n_resamples=args.resamples, seed=1)
        timings["harness.paired"].append(time.perf_counter() - started)
    interval = result.confidence_interval
    best = {name: min(values) for name, values in timings.items()}
    print(f"{args.rows} rows, {args.resamples} resamples, best of {args.repeats}; "
          f"{platform.machine()} CPU, numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"scipy.stats.bootstrap: {best['scipy.stats.bootstrap'] * 1000:.1f} ms, "
          f"CI [{interval.low:+.4f}, {interval.high:+.4f}]")
    print(f"harness.paired:        {best['harness.paired'] * 1000:.1f} ms, "
          f"CI [{ours.low:+.4f}, {ours.high:+.4f}]")
    print(f"ratio: {best['scipy.stats.bootstrap'] / best['harness.paired']:.1f}x")


if __name__ == "__main__":
    main()
