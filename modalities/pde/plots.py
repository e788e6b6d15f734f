"""Field plots as PNGs: rows of panels (coefficient, generated solution, solver solution, error map, ...)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def plot_fields(rows: list[list[tuple[str, np.ndarray]]], path: str | Path, *, title: str | None = None) -> Path:
    """One PNG, one row per sample, each panel (title, (N, N) array) with its own colour bar; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path
