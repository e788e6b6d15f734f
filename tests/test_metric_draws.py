"""Energy distance as mean +- sd over disjoint draws: its expectation on Gaussians in closed form, the floor under
the same protocol, and a comparison that ranks only what its uncertainty allows."""
import math
from statistics import NormalDist

import pytest
import torch

from unidistill.engine.metrics import Estimate, energy_draws, floor_draws
from unidistill.modalities.toy_gmm.config import EvalConfig
from unidistill.modalities.toy_gmm.evaluate import Evaluator
from unidistill.modalities.toy_gmm.mixture import GaussianMixture


def expected_v_energy(delta: float, n: int) -> float:
    """E of the V-statistic energy distance between n samples of N(delta, 1) and n of N(0, 1):
    2 E|N(delta, 2)| - 2 (n - 1)/n E|X - X'|, with
    E|N(mu, s^2)| = s sqrt(2/pi) exp(-mu^2/2s^2) + mu (1 - 2 Phi(-mu/s))."""
    s = math.sqrt(2.0)
    cross = (s * math.sqrt(2 / math.pi) * math.exp(-delta**2 / (2 * s**2))
             + delta * (1 - 2 * NormalDist().cdf(-delta / s)))
    within = 2 / math.sqrt(math.pi)
    return 2 * cross - 2 * (n - 1) / n * within


def normal(n, g):
    return torch.randn(n, 1, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("delta", [0.0, 0.3])
def test_energy_draws_mean_matches_closed_form(delta):
    g = torch.Generator().manual_seed(0)
    n, draws = 400, 40
    est = energy_draws(normal(n * draws, g) + delta, normal, draws, g)
    assert abs(est.mean - expected_v_energy(delta, n)) < 4 * est.se
    assert est.k == draws and est.sd > 0


def test_floor_is_the_perfect_samplers_score():
    g = torch.Generator().manual_seed(1)
    floor = floor_draws(normal, 300, 30, g)
    assert abs(floor.mean - expected_v_energy(0.0, 300)) < 4 * floor.se
    shifted = energy_draws(normal(300 * 30, g) + 0.3, normal, 30, g)
    assert shifted.lower_than(floor) is False and floor.lower_than(shifted)


def test_lower_than_needs_the_difference_beyond_its_uncertainty():
    a, b = Estimate(1.0, 0.5, 10), Estimate(1.2, 0.5, 10)  # se of the difference 0.224: 0.2 is not enough
    assert not a.lower_than(b) and not b.lower_than(a)
    c = Estimate(0.5, 0.5, 10)  # 0.7 / 0.224 = 3.1 se
    assert c.lower_than(b) and not b.lower_than(c)
    assert a.minus(b) == pytest.approx((-0.2, math.hypot(0.5, 0.5) / math.sqrt(10)))
    assert f"{Estimate(0.01234, 0.002, 5)}" == "0.0123 ± 0.0020"


def test_estimate_of_values_and_bad_input():
    e = Estimate.of([1.0, 2.0, 3.0])
    assert (e.mean, e.sd, e.k) == (2.0, 1.0, 3)
    with pytest.raises(ValueError, match="at least 2 draws"):
        Estimate.of([1.0])
    with pytest.raises(ValueError, match="at least 2 samples per draw"):
        energy_draws(torch.zeros(3, 1), normal, 2, torch.Generator())


def test_toy_evaluator_reports_draws_and_floor_under_one_protocol():
    mix = GaussianMixture.from_config({"ring": {"modes": 4, "radius": 3.0, "std": 0.3}})
    ev = Evaluator(mix, EvalConfig(n_samples=4000, draws=10))
    true = ev(mix.sample(4000, generator=torch.Generator().manual_seed(5)))
    assert true["energy_sd"] > 0 and true["energy_floor_sd"] > 0
    floor = Estimate(true["energy_floor"], true["energy_floor_sd"], 10)
    assert abs(true["energy"] - floor.mean) < 4 * math.hypot(floor.se, true["energy_sd"] / math.sqrt(10))
    bad = ev(mix.sample(4000, generator=torch.Generator().manual_seed(6)) * 1.3)
    assert Estimate(true["energy"], true["energy_sd"], 10).lower_than(Estimate(bad["energy"], bad["energy_sd"], 10))
    assert true["off_mode"] < 0.03 and bad["off_mode"] > true["off_mode"]
