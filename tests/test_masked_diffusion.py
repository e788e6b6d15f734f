"""Masked diffusion on exact teachers: the NELBO, SUBS, the ancestral step, the no-change cache and the
reward-guided sampler, checked against closed forms and exact distributions of a Markov chain."""
from __future__ import annotations

import math

import pytest
import torch
from test_markov import chi_square, random_chain

from unidistill.engine.masked_sampling import Guidance, guided_sample, rollout, sample, time_grid, unmask_prob
from unidistill.engine.objective import Progress
from unidistill.engine.process import MaskingProcess
from unidistill.engine.teach_masked import antithetic_times, masked_nelbo, nelbo_bound
from unidistill.modalities.text.mdlm import MDLMConfig, MDLMModel, subs
from unidistill.modalities.toy_markov.chain import sequence_index
from unidistill.modalities.toy_markov.student import MaskedDenoiser, exact_distribution, teacher_predictor

START = Progress(0, 1)

pytestmark = pytest.mark.usefixtures("one_thread")


class ChainSUBS(torch.nn.Module):
    """The Markov chain's exact masked conditionals as a full-vocabulary SUBS model (mask id = V)."""

    def __init__(self, chain):
        super().__init__()
        self.chain, self.mask_id, self.length = chain, chain.vocab, chain.length

    def forward(self, z, t):
        p = self.chain.masked_conditionals(z)  # (B, L, V)
        logits = torch.cat([torch.log(p), torch.zeros_like(p[..., :1])], -1)
        return subs(logits, z, self.mask_id).double()


def test_subs_zero_masking_and_carry_over() -> None:
    logits = torch.randn(2, 5, 7)
    z = torch.tensor([[6, 1, 6, 3, 6], [0, 6, 6, 6, 2]])
    lp = subs(logits, z, mask_id=6)
    masked = z == 6
    assert torch.isneginf(lp[masked][:, 6]).all()  # zero mass on the mask token
    assert torch.allclose(lp[masked].exp().sum(-1), torch.ones(int(masked.sum())))
    obs = lp[~masked]
    assert (obs.gather(-1, z[~masked][:, None]) == 0).all()  # observed tokens carried over with probability 1
    assert torch.isneginf(obs).sum() == obs.numel() - obs.shape[0]


def test_nelbo_of_exact_conditionals_is_the_negative_log_likelihood() -> None:
    """For exact conditionals, E_t,z NELBO(x) = -log p(x) / L (every unmasking order is a chain rule)."""
    chain = random_chain(3, 4, seed=7)
    model = ChainSUBS(chain)
    process = MaskingProcess(mask_id=3, eps=0.0)
    x = chain.sample(6, generator=torch.Generator().manual_seed(0))
    reps = 4000
    xr = x.repeat_interleave(reps, 0)
    t = antithetic_times(reps, torch.Generator().manual_seed(1), t_min=1e-6).repeat(6)  # strata per x
    z = process.corrupt(xr, t, torch.Generator().manual_seed(2))
    nelbo = masked_nelbo(model(z, t), xr, z, t, process).view(6, reps)
    exact = -chain.log_prob(x).double() / chain.length
    err = nelbo.std(1) / reps**0.5
    assert ((nelbo.mean(1) - exact).abs() < 4 * err + 1e-3).all(), (nelbo.mean(1), exact)


def test_nelbo_of_uniform_model_is_log_vocab() -> None:
    """A model uniform over the V - 1 real tokens: E NELBO = (1 - eps) log(V - 1) for every t."""
    cfg = MDLMConfig(vocab_size=11, mask_token_id=10, max_position_embeddings=8, hidden_size=16, num_layers=1,
                     num_heads=2)
    model = MDLMModel(cfg)  # the zero-initialised head gives uniform logits
    process = MaskingProcess(mask_id=10, eps=1e-3)
    blocks = torch.randint(0, 10, (64, 8), generator=torch.Generator().manual_seed(0))
    bound = nelbo_bound(model, blocks, process, n_times=64)
    assert abs(bound - (1 - 1e-3) * math.log(10)) < 0.03, bound


def test_antithetic_times_cover_each_stratum_once() -> None:
    t = antithetic_times(8, torch.Generator().manual_seed(3), t_min=0.0)
    assert sorted((t * 8).floor().long().tolist()) == list(range(8))


def test_ancestral_step_unmasks_at_the_formula_rate() -> None:
    process = MaskingProcess(mask_id=4, eps=1e-3)
    n, length = 4000, 50
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4]).expand(n, length, 4)
    z = torch.full((n, length), 4)
    z[:, :10] = 2  # observed tokens stay
    t, s = torch.full((n,), 0.7), torch.full((n,), 0.45)
    out = process.step(z, probs, t, s, torch.Generator().manual_seed(0))
    assert (out[:, :10] == 2).all()
    new = out[:, 10:]
    expected = float(unmask_prob(process, 0.7, 0.45))
    assert abs(expected - (0.7 - 0.45) / 0.7 * (1 - 1e-3) / (1 - (1 - 1e-3) * 0.45) * (1 - (1 - 1e-3) * 0.45) / (
        1 - 1e-3)) < 1e-12  # (alpha_s - alpha_t) / (1 - alpha_t) written out
    frac = float((new != 4).double().mean())
    assert abs(frac - expected) < 4 * math.sqrt(expected * (1 - expected) / new.numel())
    freq = torch.bincount(new[new != 4], minlength=4).double() / int((new != 4).sum())
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64), atol=0.01)


def test_no_change_cache_is_exact_for_time_free_models() -> None:
    cfg = MDLMConfig(vocab_size=12, mask_token_id=11, max_position_embeddings=6, hidden_size=16, num_layers=1,
                     num_heads=2)
    torch.manual_seed(0)
    model = MDLMModel(cfg)
    torch.nn.init.normal_(model.head.linear.weight, std=0.5)
    process = MaskingProcess(mask_id=11)
    a, sa = sample(model, 32, 64, process, 6, torch.Generator().manual_seed(5), cache=True)
    b, sb = sample(model, 32, 64, process, 6, torch.Generator().manual_seed(5), cache=False)
    assert torch.equal(a, b)
    assert sb.nfe == 64 and sa.nfe <= 7  # per sequence: at most one evaluation per unmasking step (L + 1)


def test_rollout_with_per_row_grid_log_prob_is_exact() -> None:
    """The 2-step rollout through tau: its trajectory log-probability summed over all trajectories ending in
    x equals the exact 2-step law, checked by sampling against exp(log p) frequencies."""
    process = MaskingProcess(mask_id=2)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = MaskedDenoiser(2, 2, hidden=8).double()
    n = 20000
    times = torch.tensor([1.0, 0.4, 0.0], dtype=torch.float64).expand(n, -1)
    with torch.no_grad():
        traj = rollout(model, n, None, process, 2, torch.Generator().manual_seed(0), times=times, vocab=2)
        exact = exact_distribution(model, 1, process, 2, 2)  # reference law on 1 step
        two = exact_distribution(model, 2, process, 2, 2)
    # a trajectory that unmasks both tokens on the first step has probability p^2 * p(x | all-mask)
    both_first = (traj.states[1] != 2).all(-1)
    p = float(unmask_prob(process, 1.0, 0.4))
    lp_expected = 2 * math.log(p) + torch.log(exact[sequence_index(traj.x[both_first], 2)])
    assert torch.allclose(traj.log_prob[both_first], lp_expected, atol=1e-9)
    assert float(two.sum()) == pytest.approx(1.0)


def test_guided_sampler_without_guidance_is_the_plain_sampler() -> None:
    chain = random_chain(3, 3, seed=2)
    process = MaskingProcess(mask_id=3)
    pred = teacher_predictor(chain)
    off = Guidance(scale=(0.0, 0.0), candidates=1)

    def disc(z, t, probs=None):  # never called when guidance is off
        raise AssertionError("the discriminator must not run without guidance")

    a, st = guided_sample(pred, disc, 30000, 4, process, 3, off, torch.Generator().manual_seed(9))
    b, _ = sample(pred, 30000, 4, process, 3, torch.Generator().manual_seed(9), cache=False)
    assert torch.equal(a, b) and st.extra == {"disc_forward": 0, "disc_backward": 0}
    exact = exact_distribution(pred, 4, process, 3, 3)
    assert chi_square(sequence_index(a, 3), exact) < 26 + 6 * 52**0.5


@pytest.mark.parametrize("mode", ["tilt", "rerank"])
def test_guidance_moves_samples_towards_the_reward(mode: str) -> None:
    """A discriminator that rewards token 0 must raise its frequency, by tilting or by re-ranking."""
    chain = random_chain(3, 4, seed=4)
    process = MaskingProcess(mask_id=3)
    pred = teacher_predictor(chain)

    def disc(z, t, probs=None):
        if probs is not None:
            return 2.0 * probs[..., 0]
        return 2.0 * (z == 0).double()

    g = Guidance(scale=(3.0, 3.0), tilt_fraction=1.0, candidates=1) if mode == "tilt" else \
        Guidance(scale=(0.0, 0.0), tilt_fraction=0.0, candidates=4)
    base, _ = sample(pred, 4000, 4, process, 4, torch.Generator().manual_seed(1), cache=False)
    guided, st = guided_sample(pred, disc, 4000, 4, process, 4, g, torch.Generator().manual_seed(1))
    assert float((guided == 0).double().mean()) > float((base == 0).double().mean()) + 0.05
    assert st.extra["disc_forward"] > 0


@pytest.mark.parametrize("steps,tilted", [(3, 1), (4, 2), (7, 3), (11, 5), (15, 7), (16, 8)])
def test_guided_sampler_tilts_the_truncated_share_of_steps(steps: int, tilted: int) -> None:
    """DiDi-Instruct's released sampler tilts int(steps * (1 - rerank ratio)) steps and re-ranks the rest;
    round() would tilt one step more at 3, 7, 11 and 15 steps (banker's rounding of 1.5, 3.5, ...)."""
    chain = random_chain(3, 3, seed=0)
    process = MaskingProcess(mask_id=3)

    def disc(z, t, probs=None):
        return (probs[..., 0] if probs is not None else (z == 0).double())

    g = Guidance(scale=(1.0, 1.0), tilt_fraction=0.5, candidates=2)
    _, st = guided_sample(teacher_predictor(chain), disc, 8, steps, process, 3, g, torch.Generator().manual_seed(0))
    assert st.extra["disc_backward"] == tilted
    assert st.extra["disc_forward"] == tilted + 2 * (steps - tilted)


def test_time_grid_rejects_bad_steps() -> None:
    with pytest.raises(ValueError, match="steps = 0"):
        time_grid(0, MaskingProcess(3))


def test_reused_rollouts_feed_the_discriminator_without_a_new_sampling_pass() -> None:
    from unidistill.engine.distill_discrete import DiscreteDistillation
    from unidistill.engine.divergences import PolicyGradient
    from unidistill.engine.noise import Noise
    from unidistill.modalities.toy_markov.student import MaskedDiscriminator

    chain = random_chain(3, 3, seed=1)
    process = MaskingProcess(mask_id=3)
    student = MaskedDenoiser(3, 3, hidden=8)
    calls = []

    def counted(s, n, group):
        calls.append(n)
        return rollout(s, n, 2, process, 3, vocab=3)

    for reuse, expected in ((True, 3), (False, 4)):  # gen, aux, gen, aux: the second aux reuses the first gen
        calls.clear()
        obj = DiscreteDistillation(process=process, student=student, rollout=counted, estimator=PolicyGradient(),
                                   time_sampler=lambda n, p, generator=None, progress=0.0: torch.rand(n,
                                                                                                  generator=generator),
                                   real=lambda noise, n: chain.sample(n), discriminator=MaskedDiscriminator(3, 3, 8),
                                   reuse_rollouts=reuse)
        noise = Noise(0)
        obj.aux_losses(noise, 4, START)
        obj.generator_loss(noise, 4, START)
        obj.aux_losses(noise, 4, START)
        obj.generator_loss(noise, 4, START)
        assert len(calls) == expected


def test_mdlm_learns_to_use_its_context() -> None:
    """A copy task (the second half repeats the first): the optimal NELBO is E[t] log V = log(V) / 2, reached
    only by reading the partner position; a context-blind model stays near log V. Guards the embedding
    initialisation (with N(0, 1) token embeddings the positions were drowned out and this failed)."""
    torch.manual_seed(0)
    vocab, half = 32, 6
    model = MDLMModel(MDLMConfig(vocab_size=vocab + 1, mask_token_id=vocab, max_position_embeddings=2 * half,
                                 hidden_size=48, num_layers=2, num_heads=2))
    process = MaskingProcess(vocab, 1e-3)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(300):
        a = torch.randint(vocab, (64, half), generator=g)
        x = torch.cat([a, a], 1)
        t = antithetic_times(64, g)
        z = process.corrupt(x, t, g)
        loss = masked_nelbo(model(z, t), x, z, t, process).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    late = sum(losses[-50:]) / 50
    assert late < 0.75 * math.log(vocab), (late, math.log(vocab))  # blind: ~log V = 3.47; optimum 1.73


def test_state_matching_is_forward_kl_over_masked_positions_and_entropy_bonus_is_minus_entropy() -> None:
    from unidistill.engine.distill_discrete import entropy_bonus, state_matching
    from unidistill.engine.masked_sampling import Trajectory

    mask = 3
    teacher_logits = torch.tensor([[2.0, 0.0, -1.0, float("-inf")]]).expand(2, 2, 4)
    student_lp = torch.log_softmax(torch.tensor([[0.0, 1.0, 0.5, float("-inf")]]).expand(2, 2, 4), -1)
    z = torch.tensor([[mask, 1], [mask, mask]])  # the observed position of row 0 is ignored
    traj = Trajectory(z, torch.zeros(2), [z], torch.tensor([[1.0, 0.0], [1.0, 0.0]]), [student_lp])
    value = state_matching(lambda z_, t_: teacher_logits, mask)(None, traj)
    p = torch.softmax(teacher_logits[0, 0, :3], -1)
    q = torch.softmax(torch.tensor([0.0, 1.0, 0.5]), -1)
    kl = float((p * (p / q).log()).sum())  # KL(teacher || student), the forward direction
    assert torch.allclose(value, torch.full((2,), kl), atol=1e-6)
    h = float(-(q * q.log()).sum())
    assert torch.allclose(entropy_bonus(None, traj, mask), torch.full((2,), -h), atol=1e-6)
