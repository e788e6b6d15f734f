"""Download-free evaluation of generated 8x8 digits: digits-FID (Frechet distance between Gaussian fits of the
shipped classifier's 128-d penultimate features of samples and of the 500 held-out real digits) plus the class
accuracy and confidence of class-conditional samples under that classifier."""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from unidistill.engine.metrics import frechet_distance, frechet_from_stats, sample_stats

from .digits import load_digits
from .digits_classifier import DigitsClassifier, load_classifier

SHAPE = (1, 8, 8)


@torch.no_grad()
def features_and_logits(clf: DigitsClassifier, x: Tensor, batch: int = 1000) -> tuple[Tensor, Tensor]:
    """Penultimate features (N, 128) and logits (N, 10) of images (N, 1, 8, 8), clamped to [-1, 1], in batches."""
    device = next(clf.parameters()).device
    feats, logits = [], []
    for xb in x.detach().float().clamp(-1, 1).split(batch):
        f = clf.features(xb.to(device))
        feats.append(f.cpu())
        logits.append(clf.head(f).cpu())  # eval mode: dropout is the identity
    return torch.cat(feats), torch.cat(logits)


@functools.cache
def shipped_evaluator() -> DigitsEvaluator:
    """The DigitsEvaluator of the shipped classifier, built once per process (held-out features computed once)."""
    return DigitsEvaluator()


class DigitsEvaluator:
    """digits-FID against a real reference split, plus class accuracy / confidence of samples."""

    def __init__(self, classifier: DigitsClassifier | None = None, reference: str = "held_out"):
        """Load the shipped classifier unless one is given and cache the reference feature mean and covariance."""
        self.classifier = (classifier if classifier is not None else load_classifier()).eval()
        self.reference = reference
        x_ref, _ = load_digits(reference)
        self.ref_mu, self.ref_cov = sample_stats(features_and_logits(self.classifier, x_ref)[0])

    def __call__(self, images: Tensor, labels: Tensor | None = None) -> dict[str, float]:
        """{"digits_fid", "confidence"} and, with labels, "class_accuracy" for images (N, 1, 8, 8) in [-1, 1]."""
        if images.ndim != 4 or tuple(images.shape[1:]) != SHAPE:
            raise ValueError(f"images must have shape (N, 1, 8, 8), got {tuple(images.shape)}")
        if labels is not None and tuple(labels.shape) != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        keys = ["digits_fid", "confidence"] + (["class_accuracy"] if labels is not None else [])
        if not torch.isfinite(images).all():
            return dict.fromkeys(keys, math.nan)
        feats, logits = features_and_logits(self.classifier, images)
        out = {"digits_fid": frechet_from_stats(*sample_stats(feats), self.ref_mu, self.ref_cov),
               "confidence": logits.softmax(dim=-1).amax(dim=-1).mean().item()}
        if labels is not None:
            out["class_accuracy"] = (logits.argmax(dim=-1) == labels.cpu().long()).float().mean().item()
        return out


def real_floor(n: int | None = None, seed: int = 0) -> dict[str, float]:
    """Real-vs-real digits-FID floor: all 1,297 train digits and a random n-subset (default 500) vs held-out.

    FID is biased upward at small sample sizes (the covariance estimates are noisy), so the n-subset floor is higher
    than the full one: compare generators at an equal number of samples, and against the floor at that N.
    """
    clf = load_classifier()
    x_tr, _ = load_digits("train")
    x_ho, y_ho = load_digits("held_out")
    n = n if n is not None else len(x_ho)
    f_tr, _ = features_and_logits(clf, x_tr)
    f_ho, logits_ho = features_and_logits(clf, x_ho)
    sub = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(seed))[:n]
    return {"fid_train_vs_held_out": frechet_distance(f_tr, f_ho),
            f"fid_train{n}_vs_held_out": frechet_distance(f_tr[sub], f_ho),
            "held_out_accuracy": (logits_ho.argmax(dim=-1) == y_ho).float().mean().item(),
            "n_train": len(x_tr), "n_held_out": len(x_ho)}
