"""Improved precision and recall (Kynkaanniemi et al. 2019) against closed forms, and the digits evaluator's unsure
share on a stub classifier with known logits."""
import importlib
import math

import numpy as np
import pytest
import torch
from torch import nn

from unidistill.engine.metrics import knn_radii, manifold_fraction, precision_recall
from unidistill.modalities.shared import digits_eval
from unidistill.modalities.shared.digits_eval import UNSURE_BELOW, DigitsEvaluator, unsure_share

pytestmark = pytest.mark.usefixtures("one_thread")


def _cluster(n, centre, seed, dim=4):
    """n points of a unit-scale Gaussian cloud around centre * (1, ..., 1) in dim dimensions, float64."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64) + centre


def test_knn_radii_on_a_line_exclude_the_point_itself():
    """Points 0..9 on a line: the 3rd nearest other point is 3 away at the ends, 2 inside; k = 1 gives 1."""
    x = torch.arange(10.0).reshape(-1, 1)
    assert knn_radii(x).tolist() == [3.0] + [2.0] * 8 + [3.0]
    assert knn_radii(x, k=1).tolist() == [1.0] * 10


def test_ball_membership_on_a_line_includes_the_boundary():
    """Support 0..9 with radius 1 (k = 1): 0.5 and 10 (exactly on the ball of 9) are inside, 10.5 and 20 not."""
    support = torch.arange(10.0).reshape(-1, 1)
    points = torch.tensor([[0.5], [10.0], [10.5], [20.0]])
    assert manifold_fraction(points, support, knn_radii(support, k=1)) == 0.5
    assert precision_recall(support, points[:3], k=1).precision == pytest.approx(2 / 3)


def test_identical_sets_give_one_and_one():
    """Every point lies in its own ball: precision = recall = 1."""
    x = _cluster(200, 0.0, seed=0)
    assert precision_recall(x, x.clone()) == (1.0, 1.0)


def test_far_shifted_set_gives_zero_and_zero():
    """A generated set moved far beyond every radius shares no ball with the real one."""
    x = _cluster(200, 0.0, seed=0)
    pr = precision_recall(x, x + 1e3)
    assert pr.precision == 0.0 and pr.recall == 0.0


def test_one_of_two_clusters_gives_full_precision_half_recall():
    """Real: clusters A and B (100 points each, 100 apart). Generated: exactly A. Each generated point is a real
    point (precision 1); each real point of A is a generated point, none of B is near one: recall 100 / 200."""
    a, b = _cluster(100, 0.0, seed=1), _cluster(100, 100.0, seed=2)
    pr = precision_recall(torch.cat([a, b]), a.clone())
    assert pr.precision == 1.0
    assert pr.recall == 0.5


def test_off_manifold_mass_lowers_precision_not_recall():
    """Real: A (60 points) only. Generated: A plus 20 points of a far cluster B (mass off the real manifold, like
    digits bridging classes). Precision = 60 / 80 = 0.75, recall = 1: swapping the two would give 1 and 0.75."""
    a, b = _cluster(60, 0.0, seed=3), _cluster(20, 100.0, seed=4)
    precision, recall = precision_recall(a, torch.cat([a, b]))
    assert precision == 0.75
    assert recall == 1.0


def test_numpy_and_blocks_agree(monkeypatch):
    """numpy inputs give the tensor result; one-row distance blocks give the same result and radii to rounding."""
    real, fake = _cluster(50, 0.0, seed=5), _cluster(40, 0.5, seed=6)
    want = precision_recall(real, fake)
    assert 0 < want.precision < 1 and 0 < want.recall < 1
    assert precision_recall(real.numpy(), np.asarray(fake)) == want
    module = importlib.import_module("unidistill.engine.metrics.precision_recall")  # the package's name is the function
    monkeypatch.setattr(module, "BLOCK", 1)
    assert precision_recall(real, fake) == want
    assert torch.allclose(knn_radii(real), _knn_radii_direct(real, 3), rtol=1e-12, atol=0)


def _knn_radii_direct(x, k):
    """The k-th smallest distance to other points from one full distance matrix with the diagonal removed."""
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    return d.sort(dim=1).values[:, k - 1]


@pytest.mark.parametrize("real, fake, k, match", [
    (torch.zeros(10), torch.zeros(10, 2), 3, r"real must be features \(N, D\)"),
    (torch.zeros(10, 2), torch.zeros(10, 2, 1), 3, r"fake must be features \(N, D\)"),
    (torch.zeros(10, 2), torch.zeros(10, 3), 3, "same feature size"),
    (torch.zeros(10, 2), torch.zeros(10, 2), 0, "k must be an integer >= 1"),
    (torch.zeros(10, 2), torch.zeros(10, 2), 2.0, "k must be an integer >= 1"),
    (torch.zeros(10, 2), torch.zeros(10, 2), True, "k must be an integer >= 1"),
    (torch.zeros(3, 2), torch.zeros(10, 2), 3, "real needs more than k = 3 points"),
    (torch.zeros(10, 2), torch.zeros(3, 2), 3, "fake needs more than k = 3 points"),
    (torch.zeros(10, 2), torch.full((10, 2), math.nan), 3, "fake has non-finite entries"),
])
def test_bad_inputs_are_value_errors(real, fake, k, match):
    """Wrong shapes, mismatched feature sizes, bad k and too few points are refused by name."""
    with pytest.raises(ValueError, match=match):
        precision_recall(real, fake, k)


def test_bad_radii_are_value_errors():
    """manifold_fraction needs one radius per support point."""
    with pytest.raises(ValueError, match=r"radii must have shape \(5,\)"):
        manifold_fraction(torch.zeros(3, 2), torch.zeros(5, 2), torch.ones(4))


def test_unsure_share_of_known_logits():
    """Top probabilities 1/10 (flat), 1/2 exactly (two tied classes: not below), ~1, 1/3: two of four unsure."""
    flat = torch.zeros(10)
    tied = torch.tensor([0.0, 0.0] + [-math.inf] * 8)
    sure = torch.tensor([20.0] + [0.0] * 9)
    third = torch.tensor([0.0, 0.0, 0.0] + [-math.inf] * 7)
    assert UNSURE_BELOW == 0.5
    assert unsure_share(torch.stack([flat, tied, sure, third])) == 0.5
    assert unsure_share(torch.stack([flat, tied]), below=0.6) == 1.0
    with pytest.raises(ValueError, match=r"logits must be \(N, C\)"):
        unsure_share(flat)


class StubClassifier(nn.Module):
    """features: the 64 pixels; logits: 20 x the first 10 pixels. A digit image in [-1, 1] with pixel c at 1 and the
    rest at -1 is sure of class c; an all-zero image has flat logits (top probability 1/10: unsure)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0), requires_grad=False)

    def features(self, x):
        return x.flatten(1)

    def head(self, f):
        return self.scale * f[:, :10]


def test_evaluator_unsure_share_on_a_stub_classifier():
    """6 sure images (one hot among the first 10 pixels) and 4 flat ones: unsure = 0.4; the stub's sure class is
    the hot pixel, so class accuracy is 6 / 10 with labels equal to it on the sure images."""
    ev = DigitsEvaluator(StubClassifier())
    x = torch.full((10, 1, 8, 8), -1.0)
    labels = torch.arange(10) % 10
    for i in range(6):
        x[i, 0, 0, i] = 1.0
    x[6:] = 0.0
    out = ev(x, labels)
    assert out["unsure"] == pytest.approx(0.4)
    assert out["class_accuracy"] == pytest.approx(0.6)
    assert 0.0 <= ev.ref_unsure <= 1.0
    assert set(out) == {"digits_fid", "confidence", "unsure", "precision", "recall", "class_accuracy"}


def test_evaluator_precision_recall_need_more_than_k_samples():
    """With at most PR_K samples precision and recall are nan; the other metrics are still given."""
    ev = DigitsEvaluator(StubClassifier())
    out = ev(torch.zeros(digits_eval.PR_K, 1, 8, 8))
    assert math.isnan(out["precision"]) and math.isnan(out["recall"])
    assert out["unsure"] == 1.0
