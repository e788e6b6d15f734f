"""The shipped digits classifier and the digits-FID evaluator built on it."""
from __future__ import annotations

import math

import pytest
import torch

from unidistill.modalities.shared.digits import load_digits
from unidistill.modalities.shared.digits_classifier import accuracy, load_classifier, save_classifier
from unidistill.modalities.shared.digits_eval import DigitsEvaluator

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clf(one_thread):
    """The shipped classifier."""
    return load_classifier()


@pytest.fixture(scope="module")
def evaluator(clf):
    """An evaluator against the held-out digits."""
    return DigitsEvaluator(clf)


def test_shipped_classifier_is_frozen_and_accurate(clf):
    """Eval mode, no trainable parameters, >= 95% on the held-out split it never saw."""
    assert not clf.training
    assert not any(p.requires_grad for p in clf.parameters())
    assert sum(p.numel() for p in clf.parameters()) < 200_000
    assert accuracy(clf, "held_out") >= 0.95


def test_missing_weights_name_the_training_command(tmp_path):
    """A missing weights file raises FileNotFoundError naming the path and the command that makes it."""
    path = tmp_path / "absent.safetensors"
    with pytest.raises(FileNotFoundError, match="unidistill.modalities.shared.digits_classifier") as err:
        load_classifier(path)
    assert str(path) in str(err.value)


def test_save_load_round_trip(clf, tmp_path):
    """save_classifier then load_classifier gives the same logits."""
    path = tmp_path / "clf.safetensors"
    save_classifier(clf, path, {"note": "test"})
    x, _ = load_digits("held_out")
    assert torch.equal(load_classifier(path)(x[:16]), clf(x[:16]))


def test_real_digits_score_well_and_noise_does_not(evaluator):
    """Held-out digits match the reference exactly, unseen-by-FID train digits closely, uniform noise badly."""
    x_ho, y_ho = load_digits("held_out")
    x_tr, y_tr = load_digits("train")
    noise = torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1

    held_out = evaluator(x_ho, y_ho)
    assert held_out["digits_fid"] < 1e-6  # the reference is the held-out split itself
    assert held_out["class_accuracy"] >= 0.95
    assert held_out["confidence"] > 0.8
    assert held_out["precision"] == held_out["recall"] == 1.0  # every point lies in its own k-NN ball
    assert held_out["unsure"] == evaluator.ref_unsure < 0.05

    train = evaluator(x_tr[:500], y_tr[:500])
    assert 0.1 < train["digits_fid"] < 5.0
    assert train["class_accuracy"] >= 0.95

    bad = evaluator(noise, y_ho)
    assert bad["digits_fid"] > 10 * train["digits_fid"]
    assert bad["class_accuracy"] < 0.3
    assert bad["precision"] < 0.5 * train["precision"] and bad["recall"] < 0.5 * train["recall"]
    assert bad["unsure"] > 10 * train["unsure"] + 0.1
    shuffled = evaluator(x_ho, y_ho[torch.randperm(500, generator=torch.Generator().manual_seed(1))])
    assert shuffled["class_accuracy"] < 0.3  # accuracy compares against the labels given


def test_unlabelled_samples_have_no_accuracy(evaluator):
    """Without labels the result has every metric but class_accuracy."""
    x, _ = load_digits("held_out")
    assert set(evaluator(x[:100])) == {"digits_fid", "confidence", "unsure", "precision", "recall"}


def test_log_prob_is_a_differentiable_reward(clf):
    """log p(y | x) is (B,), <= 0, equals log_softmax of the logits, and has a finite nonzero input gradient."""
    x, y = load_digits("held_out")
    x = x[:8].clone().requires_grad_(True)
    lp = clf.log_prob(x, y[:8])
    assert lp.shape == (8,) and (lp <= 0).all()
    assert torch.allclose(lp, clf(x).log_softmax(-1)[torch.arange(8), y[:8]])
    (grad,) = torch.autograd.grad(lp.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(10, 8, 8), (10, 3, 8, 8), (10, 1, 16, 16)])
def test_bad_shape_is_a_value_error(evaluator, shape):
    """Anything but (N, 1, 8, 8) is refused with the expected shape in the message."""
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        evaluator(torch.zeros(shape))


def test_non_finite_samples_give_nan(evaluator):
    """A diverged generator yields nan metrics instead of an exception."""
    x, y = load_digits("held_out")
    x = x[:100].clone()
    x[3, 0, 2, 2] = float("nan")
    x[7, 0, 0, 0] = float("inf")
    out = evaluator(x, y[:100])
    assert math.isnan(out["digits_fid"]) and math.isnan(out["class_accuracy"])
    assert all(math.isnan(out[k]) for k in ("unsure", "precision", "recall"))
