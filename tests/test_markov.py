"""The Markov-chain teacher and the few-step discrete student against brute-force enumeration."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

from unidistill.engine.process import MaskingProcess
from unidistill.modalities.toy_markov.chain import MarkovChainTeacher, all_sequences, sequence_index
from unidistill.modalities.toy_markov.student import (
    MaskedDenoiser,
    corrupted_distribution,
    exact_distribution,
    exact_student_kl,
    rollout,
    teacher_predictor,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def random_chain(vocab: int, length: int, seed: int) -> MarkovChainTeacher:
    """A Markov chain with every probability bounded away from 0, drawn with a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    init = torch.rand(vocab, generator=g, dtype=torch.float64) + 0.1
    trans = torch.rand(vocab, vocab, generator=g, dtype=torch.float64) ** 2 + 0.05
    return MarkovChainTeacher(init / init.sum(), trans / trans.sum(1, keepdim=True), length)


def random_masks(teacher: MarkovChainTeacher, n: int, seed: int) -> Tensor:
    """n corrupted sequences (all-mask and no-mask rows included) from random clean sequences."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(teacher.vocab, (n, teacher.length), generator=g)
    keep = torch.rand(n, teacher.length, generator=g) < 0.5
    keep[0], keep[1] = False, True
    return torch.where(keep, x, torch.full_like(x, teacher.mask_id))


def chi_square(samples: Tensor, probs: Tensor) -> float:
    """Pearson statistic of the empirical counts of samples (row indices) against probs."""
    n = samples.shape[0]
    counts = torch.bincount(samples, minlength=probs.shape[0]).double()
    return float(((counts - n * probs) ** 2 / (n * probs)).sum())


@pytest.mark.parametrize("vocab,length", [(3, 4), (4, 3)])
def test_forward_backward_matches_enumeration(vocab: int, length: int) -> None:
    teacher = random_chain(vocab, length, seed=vocab)
    x, p = teacher.enumerate()
    z = random_masks(teacher, 40, seed=length)
    consistent = ((z[:, None] == x[None]) | (z[:, None] == teacher.mask_id)).all(-1)  # (B, V^L)
    joint = consistent * p  # p(x) 1[x agrees with z's unmasked tokens]
    evidence = joint.sum(1)
    onehot = torch.nn.functional.one_hot(x, vocab).double()  # (V^L, L, V)
    brute = torch.einsum("bn,nlv->blv", joint, onehot) / evidence[:, None, None]
    torch.testing.assert_close(teacher.unmasked_log_prob(z), evidence.log(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(teacher.masked_conditionals(z), brute, rtol=1e-10, atol=1e-12)


def test_enumerate_log_prob_and_index() -> None:
    teacher = random_chain(3, 4, seed=0)
    x, p = teacher.enumerate()
    assert x.shape == (81, 4) and torch.equal(x[5], torch.tensor([0, 0, 1, 2]))
    assert abs(float(p.sum()) - 1) < 1e-12
    torch.testing.assert_close(teacher.index_of(x), torch.arange(81))
    manual = teacher.init[x[:, 0]] * teacher.transition[x[:, :-1], x[:, 1:]].prod(-1)
    torch.testing.assert_close(p, manual)


def test_sample_frequencies_match_probabilities() -> None:
    teacher = random_chain(3, 3, seed=1)
    _, p = teacher.enumerate()
    x = teacher.sample(100_000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (100_000, 3) and x.dtype == torch.long
    assert chi_square(teacher.index_of(x), p) < 26 + 6 * 52**0.5  # 26 degrees of freedom


@pytest.mark.parametrize("t", [0.0, 0.3, 0.9, 1.0])
def test_corrupted_distribution_matches_corrupted_log_prob(t: float) -> None:
    teacher = random_chain(3, 3, seed=2)
    process = MaskingProcess(mask_id=3)
    _, p = teacher.enumerate()
    q = corrupted_distribution(p, t, process, 3, 3)
    z = all_sequences(4, 3)
    assert abs(float(q.sum()) - 1) < 1e-12
    t_batch = torch.full((z.shape[0],), t, dtype=torch.float64)
    log_q = teacher.corrupted_log_prob(z, t_batch, process)
    torch.testing.assert_close(q.log(), log_q, rtol=1e-10, atol=1e-12)


def test_one_step_rollout_log_prob_is_the_exact_log_prob() -> None:
    process = MaskingProcess(mask_id=3)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MaskedDenoiser(3, 3, hidden=16).double()
    x, log_prob = rollout(model, 500, 1, process, torch.Generator().manual_seed(0))
    exact = exact_distribution(model, 1, process, 3, 3)
    torch.testing.assert_close(log_prob, exact[sequence_index(x, 3)].log(), rtol=1e-10, atol=1e-12)
    log_prob.sum().backward()  # the trajectory log-probability carries the predictor's graph
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("steps", [2, 3])
def test_rollout_samples_follow_exact_distribution(steps: int) -> None:
    process = MaskingProcess(mask_id=3)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = MaskedDenoiser(3, 3, hidden=16).double()
    with torch.no_grad():
        x, _ = rollout(model, 50_000, steps, process, torch.Generator().manual_seed(steps))
        exact = exact_distribution(model, steps, process, 3, 3)
    assert (x != 3).all()
    assert abs(float(exact.sum()) - 1) < 1e-12
    assert chi_square(sequence_index(x, 3), exact) < 26 + 6 * 52**0.5


def test_teacher_one_step_sampler_is_product_of_marginals() -> None:
    teacher = random_chain(3, 3, seed=3)
    process = MaskingProcess(mask_id=3)
    marg = teacher.masked_conditionals(torch.full((1, 3), 3))[0]  # (L, V)
    x, _ = teacher.enumerate()
    product = marg[0, x[:, 0]] * marg[1, x[:, 1]] * marg[2, x[:, 2]]
    one_step = exact_distribution(teacher_predictor(teacher), 1, process, 3, 3)
    torch.testing.assert_close(one_step, product)


def test_teacher_sampler_kl_shrinks_with_steps() -> None:
    teacher = random_chain(3, 4, seed=4)
    process = MaskingProcess(mask_id=3)
    predictor = teacher_predictor(teacher)
    kl = {n: exact_student_kl(predictor, n, teacher, process) for n in (1, 2, 4, 16, 64)}
    assert kl[1] > kl[2] > kl[4] > kl[16] > kl[64] >= 0
    assert kl[64] < 0.01 * kl[2]


ID2 = [[1, 0], [0, 1]]


@pytest.mark.parametrize("config,match", [
    ({"init": [0.5, 0.5], "transition": ID2, "length": 2, "seed": 0}, "'seed'.*allowed keys"),
    ({"init": [0.5, 0.5], "length": 2}, "missing transition"),
    ({"init": [1.0], "transition": [[1.0]], "length": 2}, "V = 1.*2..8"),
    ({"init": [1 / 9] * 9, "transition": [[1 / 9] * 9] * 9, "length": 2}, "V = 9.*2..8"),
    ({"init": [0.5, 0.5], "transition": ID2, "length": 0}, "length = 0.*1..8"),
    ({"init": [0.5, 0.5], "transition": ID2, "length": 9}, "length = 9.*1..8"),
    ({"init": [0.5, 0.5], "transition": [[1, 0], [0.3, 0.6]], "length": 2},
     "transition row 1 sums to 0.9"),
    ({"init": [0.5, 0.6], "transition": ID2, "length": 2}, "init sums to 1.1"),
    ({"init": [1.5, -0.5], "transition": ID2, "length": 2}, "init has entries.*>= 0"),
    ({"init": [0.5, 0.5], "transition": [[1, 0, 0], [0, 1, 0]], "length": 2}, r"shape \(2, 2\)"),
])
def test_config_validation(config: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MarkovChainTeacher.from_config(config)


def test_from_config_and_input_validation() -> None:
    config = {"init": [0.5, 0.5], "transition": [[0.9, 0.1], [0.2, 0.8]], "length": 3}
    teacher = MarkovChainTeacher.from_config(config)
    assert (teacher.vocab, teacher.length, teacher.mask_id) == (2, 3, 2)
    with pytest.raises(ValueError, match="allowed: 0..1"):
        teacher.log_prob(torch.tensor([[0, 1, 2]]))  # the mask id is not a clean token
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        teacher.masked_conditionals(torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="mask_id = 5"):
        teacher.corrupted_log_prob(torch.tensor([[0, 1, 2]]), torch.tensor([0.5]),
                                   MaskingProcess(5))
    with pytest.raises(ValueError, match="531441 corrupted states"):
        exact_distribution(teacher_predictor(teacher), 2, MaskingProcess(8), 8, 6)
    with pytest.raises(ValueError, match="steps = 0"):
        rollout(teacher_predictor(teacher), 4, 0, MaskingProcess(2))
    with pytest.raises(ValueError, match=r"predictor returned shape \(4, 3, 5\)"):
        rollout(lambda z, t: torch.zeros(4, 3, 5), 4, 2, MaskingProcess(2), length=3)


def test_zero_probability_evidence_is_handled() -> None:
    teacher = MarkovChainTeacher([0.5, 0.5, 0.0], [[0, 1, 0], [0, 0, 1], [1, 0, 0]], 3)
    z = torch.tensor([[0, 3, 0], [0, 3, 3], [2, 3, 3]])  # rows 0 and 2 are impossible
    cond = teacher.masked_conditionals(z)
    assert torch.isfinite(cond).all()
    torch.testing.assert_close(cond[0, 1], torch.full((3,), 1 / 3, dtype=torch.float64))
    torch.testing.assert_close(cond[1, 2], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert teacher.unmasked_log_prob(z)[0] == -float("inf")
    probs = exact_distribution(teacher_predictor(teacher), 8, MaskingProcess(3), 3, 3)
    assert torch.isfinite(probs).all() and abs(float(probs.sum()) - 1) < 1e-12
    # factorised steps can unmask 0 _ 0 together, so the few-step sampler leaves the support
    kl = exact_student_kl(teacher_predictor(teacher), 8, teacher, MaskingProcess(3))
    assert kl == float("inf")


def test_didi_with_coupled_time_weight_and_state_matching_reduces_exact_kl(tmp_path) -> None:
    """DiDi-Instruct's full objective (coupled corruption time, omega(t) = 1/t, intermediate-state matching,
    entropy bonus) with the exact log-ratio lowers the exact KL of a 2-step student to the chain."""
    from unidistill.engine.config import TrainConfig, build
    from unidistill.engine.trainer import Trainer
    from unidistill.modalities.toy_markov.backend import MarkovBackend
    from unidistill.modalities.toy_markov.config import MarkovConfig

    chain = {"init": [0.5, 0.3, 0.2], "transition": [[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]], "length": 4}
    cfg = build(MarkovConfig, {"chain": chain, "steps": 2, "hidden": 64, "ratio": "oracle", "warm_start_steps": 300,
                               "eval_teacher_steps": [2], "distill": {
                                   "coupled_time": True, "time_weight": "inverse_t", "ism_weight": 0.01,
                                   "entropy_weight": 0.0005, "divergence": {"name": "didi", "f": "rkl",
                                                                            "group_size": 8}}}, "config")
    torch.manual_seed(0)
    obj = MarkovBackend().build(cfg, tmp_path)
    before = obj.evaluate(obj.modules["generator"])["kl_student_2step"]
    train = build(TrainConfig, {"steps": 150, "batch_size": 128, "lr": {"generator": 1e-3}, "ema_decay": 0.0,
                                "progress": False, "checkpoint_every": 1000}, "train")
    after = Trainer(obj, train, tmp_path).fit()["kl_student_2step"]
    assert after < 0.6 * before, (before, after)
