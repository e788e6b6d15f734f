"""Download-free evaluation of generated 8x8 digits: digits-FID (Frechet distance between Gaussian fits of the
shipped classifier's 128-d penultimate features of samples and of the 500 held-out real digits), improved precision
and recall in the same features against the same digits, plus the class accuracy, confidence and unsure share of
samples under that classifier."""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from unidistill.engine.metrics import frechet_distance, frechet_from_stats, precision_recall, sample_stats

from .digits import load_digits
from .digits_classifier import DigitsClassifier, load_classifier

SHAPE = (1, 8, 8)
UNSURE_BELOW = 0.5  # a sample is "unsure" when the classifier's top-class probability is below this
PR_K = 3  # k of the k-NN radii of precision and recall (Kynkaanniemi et al. 2019's default)


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


def unsure_share(logits: Tensor, below: float = UNSURE_BELOW) -> float:
    """Share of rows of logits (N, C) whose largest softmax probability is below `below` (strictly): samples the
    classifier cannot put in one class, e.g. ones bridging two digits."""
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits must be (N, C) with N >= 1, got shape {tuple(logits.shape)}")
    return (logits.double().softmax(dim=-1).amax(dim=-1) < below).double().mean().item()


def _precision_recall(real: Tensor, fake: Tensor) -> dict[str, float]:
    """{"precision", "recall"} of features fake against real (k = PR_K), nan when fake has at most PR_K rows."""
    if fake.shape[0] <= PR_K:
        return {"precision": math.nan, "recall": math.nan}
    return precision_recall(real, fake, PR_K)._asdict()


@functools.cache
def shipped_evaluator() -> DigitsEvaluator:
    """The DigitsEvaluator of the shipped classifier, built once per process (held-out features computed once)."""
    return DigitsEvaluator()


class DigitsEvaluator:
    """digits-FID and precision / recall against a real reference split, plus class accuracy / confidence / unsure
    share of samples."""

    def __init__(self, classifier: DigitsClassifier | None = None, reference: str = "held_out"):
        """Load the shipped classifier unless one is given; cache the reference features, their mean and
        covariance, and the reference's own unsure share (ref_unsure)."""
        self.classifier = (classifier if classifier is not None else load_classifier()).eval()
        self.reference = reference
        x_ref, _ = load_digits(reference)
        self.ref_feats, ref_logits = features_and_logits(self.classifier, x_ref)
        self.ref_mu, self.ref_cov = sample_stats(self.ref_feats)
        self.ref_unsure = unsure_share(ref_logits)

    def __call__(self, images: Tensor, labels: Tensor | None = None) -> dict[str, float]:
        """{"digits_fid", "confidence", "unsure", "precision", "recall"} and, with labels, "class_accuracy" for
        images (N, 1, 8, 8) in [-1, 1]; precision and recall are nan for at most PR_K images."""
        if images.ndim != 4 or tuple(images.shape[1:]) != SHAPE:
            raise ValueError(f"images must have shape (N, 1, 8, 8), got {tuple(images.shape)}")
        if labels is not None and tuple(labels.shape) != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        keys = ["digits_fid", "confidence", "unsure", "precision", "recall"]
        keys += ["class_accuracy"] if labels is not None else []
        if not torch.isfinite(images).all():
            return dict.fromkeys(keys, math.nan)
        feats, logits = features_and_logits(self.classifier, images)
        out = {"digits_fid": frechet_from_stats(*sample_stats(feats), self.ref_mu, self.ref_cov),
               "confidence": logits.softmax(dim=-1).amax(dim=-1).mean().item(),
               "unsure": unsure_share(logits), **_precision_recall(self.ref_feats, feats)}
        if labels is not None:
            out["class_accuracy"] = (logits.argmax(dim=-1) == labels.cpu().long()).float().mean().item()
        return out


def real_floor(n: int | None = None, seed: int = 0) -> dict[str, float]:
    """Real-vs-real digits-FID floor: all 1,297 train digits and a random n-subset (default 500) vs held-out; the
    held-out digits' own unsure share and the precision / recall of all train digits against the held-out ones.

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
            "held_out_unsure": unsure_share(logits_ho),
            **{f"{k}_train_vs_held_out": v for k, v in _precision_recall(f_ho, f_tr).items()},
            "n_train": len(x_tr), "n_held_out": len(x_ho)}
