"""The report's figures (matplotlib, PNG): per-language F1, paired effects, training loss, and
F1 against cost. Each function takes plain tables and returns a Figure; `save` writes it without
metadata that changes between runs, so a report rebuilt from MLflow gives the same bytes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.cache import atomic_write  # noqa: E402


def save(figure: Figure, path: Path) -> Path:
    """Write `figure` as PNG, atomically: workers finishing together write the same report."""
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight",
                                                  metadata={"Software": None}))
    plt.close(figure)
    return path


def language_heatmap(f1: pd.DataFrame, *, unseen: set[str], title: str) -> Figure:
    """Configurations (rows) × languages (columns) of mean F1; unseen languages marked `*`."""
    figure, axes = plt.subplots(figsize=(1.2 + 0.75 * f1.shape[1], 0.9 + 0.42 * f1.shape[0]))
    values = f1.to_numpy(dtype=float)
    image = axes.imshow(values, cmap="viridis", aspect="auto", vmin=np.nanmin(values),
                        vmax=np.nanmax(values))
    axes.set_xticks(range(f1.shape[1]),
                    [f"{c} *" if c in unseen else c for c in f1.columns])
    axes.set_yticks(range(f1.shape[0]), list(f1.index))
    middle = (np.nanmin(values) + np.nanmax(values)) / 2
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                      color="black" if value > middle else "white")
    axes.set_title(f"{title} (* = not in the training data)", fontsize=10)
    figure.colorbar(image, ax=axes, label="F1")
    return figure


def effects_plot(effects: pd.DataFrame, *, title: str) -> Figure:
    """Paired ΔF1 with its 95% CI per comparison (columns name, delta, low, high, significant);
    filled markers: significant after Holm."""
    figure, axes = plt.subplots(figsize=(7, 0.8 + 0.4 * len(effects)))
    positions = np.arange(len(effects))[::-1]
    errors = np.clip(np.vstack([effects["delta"] - effects["low"], effects["high"] - effects["delta"]]), 0, None)
    axes.errorbar(effects["delta"], positions, xerr=errors, fmt="none", ecolor="0.4", capsize=3)
    significant = effects["significant"].to_numpy(dtype=bool)
    axes.scatter(effects["delta"][significant], positions[significant], color="C3", zorder=3,
                 label="significant (Holm)")
    axes.scatter(effects["delta"][~significant], positions[~significant], facecolors="white",
                 edgecolors="C0", zorder=3, label="CI covers 0 or not significant")
    axes.axvline(0, color="0.2", linewidth=0.8)
    axes.set_yticks(positions, list(effects["name"]))
    axes.set_xlabel("Δ F1 (paired, 95% CI)")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="best")
    return figure


def loss_curves(curves: Mapping[str, Sequence[float]], *, title: str) -> Figure:
    """Training loss per epoch, one line per trial."""
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, losses in curves.items():
        axes.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3, linewidth=1,
                  label=name)
    axes.set_xlabel("epoch")
    axes.set_ylabel("mean training loss")
    axes.set_title(title, fontsize=10)
    if len(curves) <= 12:
        axes.legend(fontsize=7, loc="upper right")
    return figure


def pareto_front(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats on both (lower cost, higher score)."""
    front = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        better = (cost <= cost[i]) & (score >= score[i]) & ((cost < cost[i]) | (score > score[i]))
        front[i] = not better.any()
    return front


def cost_plot(table: pd.DataFrame, *, score: str, title: str) -> Figure:
    """F1 against seconds per trial (columns configuration, seconds, `score`), Pareto front
    highlighted."""
    table = table.dropna(subset=[score, "seconds"])
    cost, values = table["seconds"].to_numpy(float), table[score].to_numpy(float)
    front = pareto_front(cost, values)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.scatter(cost[~front], values[~front], color="0.6", label="dominated")
    order = np.argsort(cost[front])
    axes.plot(cost[front][order], values[front][order], color="C3", marker="o", label="Pareto front")
    for name, x, y in zip(table["configuration"], cost, values, strict=True):
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    axes.set_xlabel("seconds per trial (train + score + QR checker)")
    axes.set_ylabel(f"F1 ({score})")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    return figure
