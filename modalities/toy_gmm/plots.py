"""Samples over the target density (2-D, or the first two coordinates)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unidistill.modalities.shared.plots import pyplot, save_figure


def plot_2d_samples(mixture, samples: torch.Tensor, path: str | Path, title: str = "") -> Path:
    """Scatter of samples over the contours of the target log-density (first two coordinates)."""
    plt = pyplot()
    x = samples[:, :2].numpy()
    means = mixture.means[:, :2].numpy()
    lim = float(np.abs(means).max() + 4 * float(mixture.stds.max()) + 0.5)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if mixture.dim == 2:
        g = torch.linspace(-lim, lim, 200, dtype=torch.float64)
        xx, yy = torch.meshgrid(g, g, indexing="xy")
        logp = mixture.log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)).reshape(200, 200)
        ax.contourf(xx.numpy(), yy.numpy(), logp.exp().numpy(), levels=20, cmap="Blues")
    ax.scatter(x[:, 0], x[:, 1], s=2, c="tab:red", alpha=0.5, label="student")
    ax.scatter(means[:, 0], means[:, 1], marker="x", c="k", s=30, label="mode means")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title or ("samples over target density" if mixture.dim == 2 else "first two coordinates"))
    fig.tight_layout()
    return save_figure(fig, path)
