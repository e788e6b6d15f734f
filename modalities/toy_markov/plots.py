"""Histograms of sequence probabilities: the student's against the target's."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from unidistill.modalities.shared.plots import pyplot, save_figure


def plot_histogram(labels: list[str], student: np.ndarray, target: np.ndarray, path: str | Path,
                   title: str = "", top: int = 40) -> Path:
    """Bar chart of the student's and the target's probabilities over the most likely sequences."""
    plt = pyplot()
    order = np.argsort(-target)[:top]
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(order)), 3.5), dpi=100)
    idx = np.arange(len(order))
    ax.bar(idx - 0.2, target[order], width=0.4, label="target")
    ax.bar(idx + 0.2, student[order], width=0.4, label="student")
    ax.set_xticks(idx)
    ax.set_xticklabels([labels[i] for i in order], rotation=90, fontsize=6)
    ax.set_ylabel("probability")
    ax.legend()
    ax.set_title(title or f"the {len(order)} most likely sequences")
    fig.tight_layout()
    return save_figure(fig, path)
