"""The discrete discriminator's levers against saturation, on closed forms: one-sided label smoothing
moves the BCE optimum to log((1 - s) p / (s p + q)), replay draws the fake side from the last rollouts
only, the accuracies and the reward's spread are logged, and dropout is off in students and
discriminators built from a teacher trained with it."""
from __future__ import annotations

import math

import pytest
import torch
from test_markov import random_chain

from unidistill.engine.distill_discrete import DiscreteDistillation
from unidistill.engine.divergences import PolicyGradient
from unidistill.engine.masked_sampling import Trajectory, rollout
from unidistill.engine.noise import Noise
from unidistill.engine.objective import Progress
from unidistill.engine.process import MaskingProcess
from unidistill.modalities.toy_markov.student import MaskedDenoiser

START = Progress(0, 1)
pytestmark = pytest.mark.usefixtures("one_thread")


class Table(torch.nn.Module):
    """A discriminator with one free logit per sequence of a 3-token, 3-position space (27 entries) and a 28th
    for any sequence holding the mask token; it records the inputs it is shown."""

    def __init__(self):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(28))
        self.seen: list[torch.Tensor] = []

    def forward(self, z, t):
        self.seen.append(z.clone())
        idx = (z.clamp(max=2) * torch.tensor([9, 3, 1])).sum(-1)
        return self.logits[torch.where((z == 3).any(-1), 27, idx)]


def objective(disc, real, roll, **kw) -> DiscreteDistillation:
    return DiscreteDistillation(
        process=MaskingProcess(mask_id=3), student=MaskedDenoiser(3, 3, hidden=8), rollout=roll,
        estimator=PolicyGradient(), time_sampler=lambda n, p, generator=None, progress=0.0: torch.full((n,), 1e-9),
        real=real, discriminator=disc, **kw)  # t = 1e-9: nothing is masked, the table sees the samples


def index(x):
    return (x * torch.tensor([9, 3, 1])).sum(-1)


@pytest.mark.parametrize("s", [0.0, 0.1, 0.3])
def test_label_smoothing_moves_the_optimum_to_the_smoothed_ratio(s: float) -> None:
    """Exact p (real) and q (fake) over 27 sequences. One batch holds every sequence once on the real side
    (against a masked "null" sequence on the fake side) and once on the fake side (against the null on the
    real side); weighting those rows by p and q makes the objective's own loss the exact expectation. Newton
    steps with its autograd gradient reach log((1 - s) p / (s p + q)), log(p / q) at s = 0."""
    chain = random_chain(3, 3, seed=2)
    seqs = torch.cartesian_prod(*[torch.arange(3)] * 3)
    null = torch.full((27, 3), 3)
    p = torch.tensor([chain.log_prob(x[None]).exp().item() for x in seqs], dtype=torch.float64)
    q = torch.rand(27, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.1
    q = q / q.sum()
    disc = Table().double()
    fake = Trajectory(torch.cat([null, seqs]), torch.zeros(54), [], None, [])
    obj = objective(disc, lambda noise, n: torch.cat([seqs, null]), lambda st, n, g: fake, label_smoothing=s)
    weights = torch.cat([p, q])
    idx = index(seqs)
    for _ in range(40):
        disc.zero_grad()
        (weights * obj.aux_losses(Noise(0), 54, START)["discriminator"].double()).sum().backward()
        sig = torch.sigmoid(disc.logits[idx].detach())
        with torch.no_grad():
            disc.logits[idx] -= disc.logits.grad[idx] / ((p + q) * sig * (1 - sig))
    want = torch.log((1 - s) * p / (s * p + q))
    assert torch.allclose(disc.logits[idx].detach(), want, atol=1e-8)
    if s > 0:  # the real logit is capped at log((1 - s) / s)
        assert disc.logits[idx].max() < math.log((1 - s) / s)


def test_label_smoothing_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"label_smoothing = 0.5; it must be in \[0, 0.5\)"):
        objective(Table(), lambda noise, n: None, None, label_smoothing=0.5)


@pytest.mark.parametrize("replay, allowed", [(0, {2}), (1, {1, 2}), (2, {0, 1, 2})])
def test_replay_draws_the_fake_side_from_the_last_rollouts_only(replay: int, allowed: set) -> None:
    calls = []

    def constant(st, n, g):  # the k-th rollout is the sequence (k, k, k)
        calls.append(n)
        return Trajectory(torch.full((n, 3), len(calls) - 1), torch.zeros(n), [], None, [])

    disc = Table()
    obj = objective(disc, lambda noise, n: torch.zeros(n, 3, dtype=torch.long), constant, replay=replay)
    noise = Noise(0)
    for _ in range(3):
        disc.seen.clear()
        obj.aux_losses(noise, 256, START)
    fake = disc.seen[1]
    assert set(fake[:, 0].tolist()) == allowed
    assert len(obj._replay) == (replay + 1 if replay else 0)


def test_discriminator_accuracies_and_reward_spread_are_logged() -> None:
    chain = random_chain(3, 3, seed=1)
    process = MaskingProcess(mask_id=3)
    disc = Table()
    with torch.no_grad():
        disc.logits.fill_(2.0)  # says "real" to everything: real accuracy 1, fake accuracy 0
    obj = objective(disc, lambda noise, n: chain.sample(n), lambda s, n, g: rollout(s, n, 2, process, 3, vocab=3))
    obj.aux_losses(Noise(0), 8, START)
    _, logs = obj.generator_loss(Noise(1), 8, START)
    assert logs["disc/acc_real"] == 1 and logs["disc/acc_fake"] == 0
    assert logs["reward_std"] == 0  # every sequence has the same log-ratio
    with torch.no_grad():
        disc.logits.copy_(torch.linspace(-3, 3, 28))
    _, logs = obj.generator_loss(Noise(1), 8, START)
    assert logs["reward_std"] > 0


def test_students_and_discriminators_of_a_dropout_teacher_have_no_dropout() -> None:
    from unidistill.modalities.text.discriminator import TokenDiscriminator
    from unidistill.modalities.text.masked_lm import without_dropout
    from unidistill.modalities.text.mdlm import MDLMConfig, MDLMModel

    torch.manual_seed(0)
    teacher = MDLMModel(MDLMConfig(vocab_size=16, mask_token_id=15, max_position_embeddings=8, hidden_size=16,
                                   num_layers=2, num_heads=2, dropout=0.5))
    for block in teacher.backbone.blocks:  # non-zero gates, so the residual branches (and dropout) matter
        torch.nn.init.normal_(block.ada[1].bias, std=0.5)
    torch.nn.init.normal_(teacher.head.linear.weight, std=0.5)
    ids = torch.randint(15, (4, 8))
    teacher.train()
    assert not torch.equal(teacher.logits(ids), teacher.logits(ids))  # dropout is on while training
    disc = TokenDiscriminator(teacher, trainable_blocks=2).train()  # (its spectral norm iterates per call)
    assert torch.equal(disc.body.backbone(ids)[0], disc.body.backbone(ids)[0])
    assert not torch.equal(teacher.backbone(ids)[0], teacher.backbone(ids)[0])
    student = without_dropout(teacher).train()
    assert torch.equal(student.logits(ids), student.logits(ids))
    plain = MDLMModel(MDLMConfig(vocab_size=16, mask_token_id=15, max_position_embeddings=8, hidden_size=16,
                                 num_layers=2, num_heads=2))
    assert set(plain.state_dict()) == set(teacher.state_dict())  # dropout adds no weights
    with pytest.raises(ValueError, match=r"dropout = 1.0; it must be in \[0, 1\)"):
        MDLMConfig(dropout=1.0)
