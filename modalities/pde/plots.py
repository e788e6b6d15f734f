"""Field plots as PNGs: rows of panels (coefficient, generated solution, solver solution, error map, ...)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from unidistill.modalities.shared.plots import pyplot, save_figure


def plot_fields(rows: list[list[tuple[str, np.ndarray]]], path: str | Path, *, title: str | None = None) -> Path:
    """One PNG, one row per sample, each panel (title, (N, N) array) with its own colour bar; written atomically."""
    plt = pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.3 * n_rows), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            name, field = row[c]
            field = np.asarray(field, dtype=np.float64)
            cmap = "magma" if name.startswith(("error", "|")) else "viridis"
            im = ax.imshow(field, origin="lower", cmap=cmap, interpolation="nearest")
            ax.set_title(name, fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def plot_samples(teacher, x_model: Tensor, path: str | Path) -> Path:
    """Each sample's channels (physical units) and its pointwise residual |A(a)u - f|."""
    from .problems import relative_residual

    x = teacher.norm.to_physical(x_model.detach().double().cpu())
    res, rel = teacher.pde.residual(x).abs(), relative_residual(teacher.pde, x)
    rows = []
    for i in range(x.shape[0]):
        row = [(name, x[i, c].numpy()) for c, name in enumerate(teacher.pde.channels)]
        row.append((f"|residual| (rel {float(rel[i]):.2e})", res[i].numpy()))
        rows.append(row)
    return plot_fields(rows, path, title=f"{teacher.pde.name}: generated samples")
