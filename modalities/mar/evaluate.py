"""Metrics of MAR samples: digits-FID and class accuracy under the shipped digits classifier (the image backend's
evaluator, in the shared layer), with the wall time per image split between transformer and head and their
network evaluations per image."""
from __future__ import annotations

import time

import torch
from torch import Tensor

from .tokens import unpatchify


def balanced_labels(n: int, classes: int = 10) -> Tensor:
    """0, 1, ..., classes - 1, 0, 1, ...: n labels, every class (nearly) equally often."""
    return torch.arange(n) % classes


def image_metrics(tokens: Tensor, labels: Tensor, patch: int, channels: int = 1) -> dict[str, float]:
    """digits_fid, class_accuracy, confidence of samples (N, L, d) of the given labels."""
    from unidistill.modalities.shared.digits_eval import shipped_evaluator

    return shipped_evaluator()(unpatchify(tokens.float(), patch, channels).clamp(-1, 1), labels)


def timed(draw, n: int) -> tuple[Tensor, dict[str, float]]:
    """(samples, {seconds_per_image, transformer_s_per_image, head_s_per_image, transformer_nfe, head_nfe}) of
    draw(watch) -> samples, with per-image figures from the stopwatch (NFEs per image: transformer passes over
    the batch, K times the guidance halves, and head evaluations summed over the image's tokens, steps x L x halves
    for the teacher)."""
    from .sampler import Stopwatch

    watch = Stopwatch()
    start = time.perf_counter()
    out = draw(watch)
    total = time.perf_counter() - start
    return out, {"seconds_per_image": total / n,
                 "transformer_s_per_image": watch.seconds["transformer"] / n,
                 "head_s_per_image": watch.seconds["head"] / n,
                 "transformer_nfe": watch.calls["transformer"],
                 "head_nfe": watch.calls["head"] / n}
