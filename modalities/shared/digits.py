"""scikit-learn's bundled handwritten digits (1,797 images, 8x8, 10 classes; no download) as
image tensors in [-1, 1], with one fixed train / held-out split shared by teacher, classifier and
evaluation so the held-out images are never trained on."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

N_HELD_OUT = 500  # held-out images: the reference set of digits-FID
SPLIT_SEED = 0
SPLITS = ("train", "held_out", "all")


def load_digits(split: str = "train") -> tuple[Tensor, Tensor]:
    """(x (N, 1, 8, 8) float32 in [-1, 1], y (N,) int64) for split train | held_out | all."""
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; choose one of: {', '.join(SPLITS)}")
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)  # pixel values 0..16
    y = torch.from_numpy(d.target.astype(np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    idx = {"train": order[N_HELD_OUT:], "held_out": order[:N_HELD_OUT], "all": order}[split]
    return x[idx], y[idx]


def to_uint8(x: Tensor) -> np.ndarray:
    """[-1, 1] images (N, C, H, W) -> uint8 (N, H, W, C)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
