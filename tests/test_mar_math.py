"""The math of the MAR modality against closed forms: patches as tokens; the unmasking schedule (MAR's cosine counts,
every token revealed once) and its guidance ramp; the teacher's masked per-token diffusion loss and mask ratios;
the head's reverse chain on a Gaussian; the exact kernel-mixture teacher (Tweedie, guidance, weights from the
context, class members); MARVAL's per-token divergence as the engine's divergence per token; and its gradient
against the Gaussian KL / Fisher closed forms with an exact fake. Each comment names a mutation of the code under
test that the test catches (those marked "seen" were applied by monkeypatching and seen to fail)."""
import math

import numpy as np
import pytest
import torch

from unidistill.engine.distill import ContinuousDistillation
from unidistill.engine.divergences import DIVERGENCES, Critics
from unidistill.engine.noise import Noise
from unidistill.engine.objective import Progress
from unidistill.engine.process import bcast
from unidistill.modalities.mar import exact, schedule, teach, tokens
from unidistill.modalities.mar.io import tiny_model
from unidistill.modalities.mar.model import Cond, cosine_process
from unidistill.modalities.mar.sampler import reverse_chain

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64
L16 = 16


# --- tokens ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [1, 2, 4, 8])
def test_patchify_round_trips_and_orders_patches_in_raster_order(p):
    """unpatchify(patchify(x)) = x; (N, L, p^2) with L = (8/p)^2; token r*(8/p)+c is pixels [rp:(r+1)p, cp:(c+1)p]
    flattened row-major."""
    # catches (seen) the permute (0, 2, 4, 1, 3, 5) -> (0, 4, 2, 1, 3, 5) (column-major patches: raster check fails) and
    # (.., 3, 5) -> (.., 5, 3) inside a patch (transposed pixels) for p > 1
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(p))
    t = tokens.patchify(x, p)
    side = 8 // p
    assert t.shape == (3, side * side, p * p)
    assert torch.equal(tokens.unpatchify(t, p), x)
    for r, c in [(0, 0), (0, side - 1), (side - 1, 0), (side // 2, side - 1)]:
        assert torch.equal(t[:, r * side + c], x[:, 0, r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(3, -1))


def test_token_zero_of_2x2_patches_is_the_top_left_block():
    # catches (seen) a transpose inside the patch ([0,0],[1,0],[0,1],[1,1] order) and patches in column-major order
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    t = tokens.patchify(x, 2)
    assert t[0, 0].tolist() == [0.0, 1.0, 8.0, 9.0]
    assert t[0, 1].tolist() == [2.0, 3.0, 10.0, 11.0]  # the next patch to the right, not below
    assert t[0, 4].tolist() == [16.0, 17.0, 24.0, 25.0]


@pytest.mark.parametrize("bad", [3, 0, 5, 16, 2.0, True])
def test_check_patch_names_the_allowed_divisors(bad):
    # catches (seen) the divisor list built from range(1, image) (8 missing) or a patch that does not tile accepted
    with pytest.raises(ValueError, match=r"choose one of: 1, 2, 4, 8$"):
        tokens.check_patch(8, bad)
    for good in (1, 2, 4, 8):
        tokens.check_patch(8, good)


# --- the unmasking schedule --------------------------------------------------------------------------------------

def mar_masked_after(iters, length):
    """MAR's own counts (models/mar.py `sample_tokens`): m_{k+1} = max(1, min(m_k - 1, floor(L cos(pi/2 (k+1)/K)))),
    and every remaining token on the last iteration."""
    m = [length]
    for k in range(iters):
        if k == iters - 1:
            m.append(0)
            break
        target = int(np.floor(length * np.cos(math.pi / 2.0 * (k + 1) / iters)))
        m.append(max(1, min(m[-1] - 1, target)))
    return m


@pytest.mark.parametrize("iters", range(1, L16 + 1))
def test_every_token_is_revealed_exactly_once_in_k_iterations(iters):
    """Each token gets one iteration in [0, K); every iteration reveals >= 1 token; iteration k reveals exactly
    order[m_{k+1}:m_k] and the first m_{k+1} tokens of the order stay masked after it."""
    # catches (seen) the clamp `min(m[-1] - 1, target)` -> `target` (K = 16: two iterations share m = 15, one reveals
    # nothing), and the scatter in step_of_token replaced by a gather (steps of ranks read at token positions)
    orders = schedule.random_orders(64, L16, torch.Generator().manual_seed(iters))
    steps = schedule.step_of_token(orders, iters)
    m = schedule.masked_after(iters, L16)
    assert m[0] == L16 and m[-1] == 0 and len(m) == iters + 1
    assert all(a > b for a, b in zip(m, m[1:]))  # strictly decreasing: every iteration reveals a token
    assert steps.min() >= 0 and steps.max() == iters - 1
    counts = torch.stack([(steps == k).sum(1) for k in range(iters)], 1)
    assert (counts >= 1).all() and (counts.sum(1) == L16).all()
    for k in range(iters):
        rows = torch.arange(64)[:, None]
        assert (steps[rows, orders[:, m[k + 1]:m[k]]] == k).all()
        assert (steps[rows, orders[:, :m[k + 1]]] > k).all()


def test_counts_are_mars_cosine_counts_for_every_k():
    """m_{k+1} = floor(L cos(pi/2 (k+1)/K)) whenever that value lies in [K - k - 1, m_k - 1], and the counts are
    MAR's own clamped counts for every K in 1 .. 16. (MAR's clamp to [1, m_k - 1] never leaves an iteration empty
    for K <= L: L cos(pi/2 (k+1)/K) = L sin(pi/2 (K-k-1)/K) >= K - k - 1, so the K - k - 1 floor never binds.)"""
    # catches (seen) cos -> sin, (k + 1) -> k and floor -> round (each changes a feasible count)
    checked = 0
    for iters in range(1, L16 + 1):
        m = schedule.masked_after(iters, L16)
        for k in range(iters - 1):
            target = int(np.floor(L16 * np.cos(math.pi / 2.0 * (k + 1) / iters)))
            if iters - k - 1 <= target <= m[k] - 1:
                assert m[k + 1] == target, (iters, k, m)
                checked += 1
        assert m == mar_masked_after(iters, L16), iters
    assert checked > 60  # the comparison with the formula was not vacuous
    assert schedule.masked_after(8, L16) == [16, 15, 14, 13, 11, 8, 6, 3, 0]
    assert schedule.masked_after(16, L16) == list(range(16, -1, -1))


@pytest.mark.parametrize("iters", [1, 2, 5, 8, 16])
def test_linear_guidance_ramps_from_the_first_count_to_w(iters):
    """w_k = 1 + (w - 1)(L - max(m_{k+1}, 1)) / L (MAR's mask length is clamped to >= 1 at every iteration, the
    last included): the last is 1 + (w - 1)(L - 1)/L, the first 1 + (w - 1)(L - m_1)/L, non-decreasing;
    constant is w throughout."""
    # catches (seen) (L - m) -> m (a ramp down from w) and m_{k+1} -> m_k (first scale 1, last < w)
    w = 3.0
    m = schedule.masked_after(iters, L16)
    g = schedule.guidance_scales(w, iters, L16)
    assert g.shape == (iters,)
    assert g[-1].item() == pytest.approx(1 + (w - 1) * (L16 - 1) / L16)
    assert g[0].item() == pytest.approx(1 + (w - 1) * (L16 - max(m[1], 1)) / L16)
    assert (g[1:] >= g[:-1]).all()
    assert torch.equal(schedule.guidance_scales(w, iters, L16, "constant"), torch.full((iters,), w))
    assert torch.allclose(schedule.guidance_scales(1.0, iters, L16), torch.ones(iters))
    with pytest.raises(ValueError, match="linear, constant"):
        schedule.guidance_scales(w, iters, L16, "cosine")


@pytest.mark.parametrize("bad", [0, 17, -1, 2.0, True])
def test_check_iters_rejects_outside_one_to_l(bad):
    # catches (seen) the lower bound 1 -> 0 (K = 0 accepted: an empty unmasking loop returns all-zero tokens)
    with pytest.raises(ValueError, match=r"\[1, 16\]"):
        schedule.check_iters(bad, L16)
    schedule.check_iters(1, L16)
    schedule.check_iters(16, L16)


# --- the teacher's loss and mask ratios --------------------------------------------------------------------------

def tiny_mar(seed=0, patch=2):
    return tiny_model(patch, seed, std=0.1)


def test_teacher_loss_is_the_eps_mse_over_masked_tokens_only():
    """MARObjective's per-example loss = mean over the masked tokens and the head_batch_mul draws of
    ||eps_theta(x_t, t, z_i) - eps||^2 / d, recomputed from the inputs the networks saw; its gradient with respect
    to the head's prediction is zero on visible tokens and non-zero on masked ones; the head sees each token's own
    z from the transformer, which sees the visible tokens; at least ceil(0.7 L) tokens are masked."""
    # catches (seen) `w = masked` -> `~masked` (loss on visible tokens), the normaliser `mul * w.sum` -> `w.sum`
    # (the head_batch_mul draws summed, not averaged: the bug this test found) or -> `mul * L`, and the masked set
    # inverted in the transformer call (`~masked` -> `masked`)
    model = tiny_mar()
    n, mul, length, dim = 6, 2, model.length, model.token_dim
    g = torch.Generator().manual_seed(1)
    data, labels = torch.randn(20, length, dim, generator=g), torch.randint(10, (20,), generator=g)
    obj = teach.MARObjective(model, data, labels, mask_min=0.7, head_batch_mul=mul)
    seen = {}
    transformer_forward, head_forward = model.transformer.forward, model.head.forward

    def transformer(x, visible, y, drop=None):
        seen["x"], seen["visible"] = x, visible
        seen["z"] = transformer_forward(x, visible, y, drop)
        return seen["z"]

    def head(x_t, t, z):
        seen["x_t"], seen["t"], seen["zh"] = x_t, t, z
        seen["delta"] = torch.zeros(x_t.shape[0], dim, requires_grad=True)
        seen["pred"] = head_forward(x_t, t, z)
        return seen["pred"] + seen["delta"]

    model.transformer.forward, model.head.forward = transformer, head
    loss, logs = obj.generator_loss(Noise(3), n, Progress(0, 1))
    assert loss.shape == (n,) and torch.isfinite(loss).all()
    masked = ~seen["visible"]
    assert (masked.sum(1) >= math.ceil(0.7 * length)).all()
    # which rows of the data were picked: each x row is one training example
    assert all(any(torch.equal(row, d) for d in data) for row in seen["x"])
    process = model.process
    t = seen["t"].reshape(n, mul, length)
    assert t.min() >= process.t_min and t.max() <= process.t_max
    a, s = process.alpha(t)[..., None], process.sigma(t)[..., None]
    x_t = seen["x_t"].reshape(n, mul, length, dim)
    eps = (x_t - a * seen["x"][:, None]) / s
    err = (seen["pred"].detach().reshape(n, mul, length, dim) - eps).pow(2).mean(-1)  # (n, mul, L)
    want = (err * masked[:, None]).sum((1, 2)) / (mul * masked.sum(1))
    assert torch.allclose(loss, want, rtol=1e-5, atol=1e-6)
    zh = seen["zh"].reshape(n, mul, length, -1)
    assert torch.equal(zh, seen["z"][:, None].expand_as(zh))
    (grad,) = torch.autograd.grad(loss.sum(), seen["delta"])
    grad = grad.reshape(n, mul, length, dim).abs().sum((1, 3))
    assert (grad[~masked] == 0).all() and (grad[masked] > 0).all()


def test_mask_ratio_is_the_truncated_normal_on_mask_min_to_one():
    """mask_ratio(u) for u ~ U[0, 1) lies in [mask_min, 1] and has the law of N(1, 0.25^2) truncated to
    [mask_min, 1]: mean within 3 standard errors, and on a midpoint grid of u the sorted draws are the quantiles."""
    # catches (seen) ndtr((1 - lo) / scale) -> ndtr((lo - 1) / scale) (draws above 1) and scale 0.25 -> 0.5 in the
    # quantile (the mean drops below the truncated normal's)
    from scipy.stats import truncnorm

    lo, scale = 0.7, 0.25
    law = truncnorm((lo - 1) / scale, 0.0, loc=1.0, scale=scale)
    u = torch.rand(100000, generator=torch.Generator().manual_seed(0))
    r = teach.mask_ratio(u, lo).double()
    assert r.min() >= lo - 1e-6 and r.max() <= 1.0 + 1e-6
    se = law.std() / math.sqrt(len(r))
    assert abs(r.mean().item() - law.mean()) < 3 * se
    grid = (torch.arange(2000, dtype=F64) + 0.5) / 2000
    q = np.sort(teach.mask_ratio(grid, lo).double().numpy())
    assert np.allclose(q, law.ppf(grid.numpy()), atol=2e-6)


# --- the head's reverse chain ------------------------------------------------------------------------------------

@pytest.mark.parametrize("eta", [1.0, 0.0])
def test_reverse_chain_with_the_exact_gaussian_eps_samples_the_gaussian(eta):
    """x0 ~ N(mu, s^2) per dimension has eps*(x_t) = sigma (x_t - alpha mu) / (alpha^2 s^2 + sigma^2); 200 steps of
    the DDPM posterior (eta = 1) or DDIM (eta = 0) from N(0, I) give mean mu and std s within a few percent."""
    # catches (seen) `(b_s**2 - c2) ** 0.5` -> `(b_s**2 + c2) ** 0.5` (std x 100), c2 without eta**2 (DDIM draws
    # noise) and the noise term dropped at eta = 1 (std -> 0)
    process = cosine_process()
    mu, s = torch.tensor([0.5, -1.0], dtype=F64), torch.tensor([0.3, 0.8], dtype=F64)

    def eps_fn(x, t):
        a, b = process.alpha(t)[:, None], process.sigma(t)[:, None]
        return b * (x - a * mu) / (a**2 * s**2 + b**2)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 2, generator=g, dtype=F64)
    out = reverse_chain(eps_fn, x, process, 200, eta=eta, generator=g)
    assert torch.allclose(out.mean(0), mu, atol=0.02)
    assert torch.allclose(out.std(0), s, rtol=0.04)  # 200 steps: the chains' discretisation leaves std 1-3% low
    again = reverse_chain(eps_fn, x, process, 200, eta=eta, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, out) == (eta == 0.0)  # DDIM is deterministic, the DDPM posterior is not
    with pytest.raises(ValueError, match="head steps"):
        reverse_chain(eps_fn, x, process, 0)


# --- the exact kernel-mixture teacher ----------------------------------------------------------------------------

N_EX, L4, D2 = 12, 4, 2


@pytest.fixture(scope="module")
def kernel():
    g = torch.Generator().manual_seed(7)
    data = torch.randn(N_EX, L4, D2, generator=g)
    labels = torch.arange(N_EX) % 3
    return data, labels


def random_cond(b, seed, labels=None, scale=None, z_null=False):
    g = torch.Generator().manual_seed(seed)
    tok = torch.randn(b, L4, D2, generator=g)
    visible = torch.rand(b, L4, L4, generator=g) < 0.5
    visible &= ~torch.eye(L4, dtype=torch.bool)  # a token never sees itself
    visible[:, 0] = False  # token 0 sees nothing (the first iteration)
    labels = torch.randint(3, (b,), generator=g) if labels is None else labels
    scale = torch.ones(b, L4) if scale is None else scale
    z = torch.zeros(b, L4, 1)
    return Cond(z, z.clone() if z_null else None, scale, tok, visible, labels)


def brute_log_density(x_t, t, cond, data, labels, s0, process, conditional):
    """log p_t(x_t,i | context) by loops: weights from the visible tokens' distances (class members only when
    conditional), each component N(alpha x_{n,i}, (alpha^2 s0^2 + sigma^2) I)."""
    b = x_t.shape[0]
    out = torch.empty(b, L4, dtype=F64)
    data = data.double()
    for r in range(b):
        for i in range(L4):
            vis = cond.visible[r, i]
            logw = -((cond.tokens[r, vis].double() - data[:, vis]) ** 2).sum((1, 2)) / (2 * s0**2)
            if conditional:
                logw = torch.where(labels == cond.labels[r], logw, torch.tensor(-math.inf, dtype=F64))
            a, sg = process.alpha(t[r, i].double()), process.sigma(t[r, i].double())
            v = a**2 * s0**2 + sg**2
            comp = -((x_t[r, i].double() - a * data[:, i]) ** 2).sum(1) / (2 * v) - 0.5 * D2 * torch.log(
                2 * math.pi * v)
            out[r, i] = torch.logsumexp(logw + comp, 0) - torch.logsumexp(logw, 0)
    return out


@pytest.mark.parametrize("conditional", [True, False])
def test_kernel_mixture_denoiser_is_tweedie_of_its_log_density(kernel, conditional):
    """(alpha D - x_t) / sigma^2 = grad log p_t(x_t,i | context) by autograd, per token at its own time, with the
    class restriction (forward at scale 1) and without it (forward at scale 0 with a null half = D_null); and
    log_density equals a loop over the examples with weights from the visible tokens only."""
    # catches (seen) the einsum's visible transposed ("bij" -> "bji": token i weighted by who saw it), s0**2 -> s0
    # in the weights, and the class mask inverted (`!=` -> `==`)
    data, labels = kernel
    s0, process = 0.6, cosine_process()
    km = exact.KernelMixture(data, labels, s0, process)
    cond = random_cond(3, 11, scale=None if conditional else torch.zeros(3, L4), z_null=not conditional)
    assert cond.visible.any() and not cond.visible.all()
    for seed, (lo, hi) in enumerate([(0.1, 0.4), (0.4, 0.7), (0.7, 0.95)]):
        g = torch.Generator().manual_seed(seed)
        t = lo + (hi - lo) * torch.rand(3, L4, generator=g)
        x_t = torch.randn(3, L4, D2, generator=g).requires_grad_()
        logp = km.log_density(x_t, t, cond, conditional=conditional)
        assert logp.shape == (3, L4)
        want = brute_log_density(x_t.detach(), t, cond, data, labels, s0, process, conditional)
        assert torch.allclose(logp.double(), want, atol=1e-4)
        (score,) = torch.autograd.grad(logp.sum(), x_t)
        a, b = bcast(process.alpha(t), x_t), bcast(process.sigma(t), x_t)
        d = km(x_t.detach(), t, cond)
        assert torch.allclose((a * d - x_t.detach()) / b**2, score, rtol=1e-4, atol=1e-4)


def test_kernel_mixture_guidance_per_token_is_null_plus_w_times_the_gap(kernel):
    """With z_null and a scale w per token: D = D_null + w (D_c - D_null), and the guided score equals
    s_u + w (s_c - s_u) with s_c, s_u from autograd of the two log densities."""
    # catches (seen) `d_null + w (d - d_null)` -> `d + w (d - d_null)` and the scale read per example (scale[:, :1])
    data, labels = kernel
    s0, process = 0.6, cosine_process()
    km = exact.KernelMixture(data, labels, s0, process)
    w = torch.tensor([[1.0, 2.0, 3.5, 0.5], [4.0, 1.5, 2.5, 3.0]])
    cond = random_cond(2, 12, scale=w, z_null=True)
    g = torch.Generator().manual_seed(5)
    t = 0.2 + 0.6 * torch.rand(2, L4, generator=g)
    x_t = torch.randn(2, L4, D2, generator=g).requires_grad_()
    (s_c,) = torch.autograd.grad(km.log_density(x_t, t, cond, conditional=True).sum(), x_t)
    (s_u,) = torch.autograd.grad(km.log_density(x_t, t, cond, conditional=False).sum(), x_t)
    assert (s_c - s_u).abs().max() > 1e-2  # the classes disagree here: the test can fail
    a, b = bcast(process.alpha(t), x_t), bcast(process.sigma(t), x_t)
    x = x_t.detach()
    d = km(x, t, cond)
    ones = Cond(cond.z, None, torch.ones(2, L4), cond.tokens, cond.visible, cond.labels)
    zeros = Cond(cond.z, cond.z_null, torch.zeros(2, L4), cond.tokens, cond.visible, cond.labels)
    d_c, d_u = km(x, t, ones), km(x, t, zeros)
    assert torch.allclose(d, d_u + w[..., None] * (d_c - d_u), atol=1e-5)
    assert torch.allclose((a * d - x) / b**2, s_u + w[..., None] * (s_c - s_u), rtol=1e-4, atol=1e-4)


def test_kernel_mixture_sample_reads_its_weights_from_the_context(kernel):
    """A context that is training example n's tokens, tiny s0: every token that saw something draws example n's
    token (+ s0 noise); with another class, never example n; a token that saw nothing draws a member of its
    class."""
    # catches (seen) the class mask inverted and the visible matrix transposed in log_weights
    data, labels = kernel
    s0 = 1e-3
    km = exact.KernelMixture(data, labels, s0, cosine_process())
    picks = torch.tensor([0, 5, 7, 10, 3, 8])
    cond = random_cond(6, 13, labels=labels[picks])
    cond.tokens = data[picks].clone()
    cond.visible[:, 1:, 0] = True  # every token but token 0 saw token 0 at least
    x = km.sample(cond, torch.Generator().manual_seed(0))
    assert x.shape == (6, L4, D2)
    assert torch.allclose(x[:, 1:], data[picks][:, 1:], atol=10 * s0)
    assert not torch.allclose(x[:, 1:], data[picks][:, 1:], atol=1e-6)  # s0 noise was added
    dist = ((x[:, :, None] - data.permute(1, 0, 2)[None]) ** 2).sum(-1)  # (B, L, N)
    nearest = dist.argmin(-1)
    assert (labels[nearest[:, 0]] == labels[picks]).all()  # token 0: a member of its class
    other = Cond(cond.z, None, cond.scale, cond.tokens, cond.visible, (labels[picks] + 1) % 3)
    nearest = ((km.sample(other, torch.Generator().manual_seed(1))[:, :, None] - data.permute(1, 0, 2)[None]) ** 2
               ).sum(-1).argmin(-1)
    assert (nearest != picks[:, None]).all() and (labels[nearest] == other.labels[:, None]).all()


def test_kernel_mixture_joint_draws_members_of_the_class(kernel):
    """joint(y) = a training example of class y (every member drawn) + s0 noise."""
    # catches (seen) `self.labels == y` -> `!=` and the noise scale dropped
    data, labels = kernel
    s0 = 1e-3
    km = exact.KernelMixture(data, labels, s0, cosine_process())
    y = torch.arange(3).repeat(40)
    x = km.joint(y, torch.Generator().manual_seed(0))
    dist = ((x[:, None] - data[None]) ** 2).sum((2, 3))  # (B, N)
    nearest = dist.argmin(1)
    assert (labels[nearest] == y).all()
    assert dist.min(1).values.max() < (10 * s0) ** 2 * L4 * D2 and dist.min(1).values.min() > 0
    assert set(nearest.tolist()) == set(range(N_EX))
    with pytest.raises(ValueError, match="s0"):
        exact.KernelMixture(data, labels, 0.0, cosine_process())


# --- MARVAL's per-token divergence -------------------------------------------------------------------------------

def smooth_critics(process):
    """A nonlinear teacher and fake denoiser that act elementwise and read the time of their own token."""
    return Critics(process,
                   teacher=lambda x, t: torch.tanh(x) * (1 + bcast(t, x)) + 0.1,
                   fake=lambda x, t: 0.5 * x + torch.sin(x) * bcast(t, x))


@pytest.mark.parametrize("name", ["sim", "sid", "fgm", "ikl", "sds"])
def test_one_token_per_token_loss_is_the_engines_loss(name):
    """x0 (B, 1, d) with t (B, 1) gives the engine's loss (and x0-gradient) of x0 (B, d) with t (B,); with L = 3
    tokens at their own times the loss is the sum of the three single-token losses."""
    # catches (seen) per_element reducing over every non-batch axis (the pseudo-Huber norm and the sid/dmd
    # normaliser then taken over all tokens at once)
    process = cosine_process()
    div = DIVERGENCES.get(name)()
    critics = smooth_critics(process)
    g = torch.Generator().manual_seed(0)
    b, d = 5, 4
    x0 = torch.randn(b, 3, d, generator=g, dtype=F64).requires_grad_()
    t = 0.05 + 0.9 * torch.rand(b, 3, generator=g, dtype=F64)
    eps = torch.randn(b, 3, d, generator=g, dtype=F64)
    one = div.loss(x0[:, :1], t[:, :1], eps[:, :1], critics)
    flat = div.loss(x0[:, 0], t[:, 0], eps[:, 0], critics)
    assert one.shape == flat.shape == (b,)
    assert torch.allclose(one, flat, rtol=1e-12, atol=1e-14)
    g1 = torch.autograd.grad(one.sum(), x0)[0]
    g2 = torch.autograd.grad(flat.sum(), x0)[0]
    assert torch.allclose(g1, g2, rtol=1e-12, atol=1e-14) and g1.abs().sum() > 0
    three = div.loss(x0, t, eps, critics)
    singles = sum(div.loss(x0[:, i], t[:, i], eps[:, i], critics) for i in range(3))
    assert torch.allclose(three, singles, rtol=1e-10, atol=1e-12)
    assert torch.allclose(torch.autograd.grad(three.sum(), x0)[0], torch.autograd.grad(singles.sum(), x0)[0],
                          rtol=1e-10, atol=1e-12)


def test_continuous_distillation_draws_one_time_per_token_and_conditions_on_the_sample():
    """time_shape (L,): the divergence sees t (B, L) with each token at its own time, the teacher and the fake the
    condition computed from the sample without its graph; generator_loss equals the per-token engine SIM loss."""
    # catches (seen) time_shape ignored in _times (t (B,) shared by the tokens) and the condition fed x0 with graph
    process = cosine_process()
    b, length, d = 4, 3, 2
    seen = {}

    class Recording(type(DIVERGENCES.get("sim")())):
        def loss(self, x0, t, eps, critics):
            seen.update(x0=x0, t=t, eps=eps)
            return super().loss(x0, t, eps, critics)

    def condition(x0, c):
        seen["cond_grad"] = x0.requires_grad
        return x0.sum((1, 2))  # a condition the critics read: the sample's own sum

    class Fake(torch.nn.Module):  # no parameters: an exact fake, queried and never trained
        def forward(self, x, t, c):
            return 0.5 * x + torch.sin(x) * bcast(t, x) - bcast(c, x)

    class Generator(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(d, d)

        def forward(self, z, c):
            return self.lin(z)

    obj = ContinuousDistillation(
        process=process, generator=Generator(), divergence=Recording(), fake=Fake(),
        teacher=lambda x, t, c: torch.tanh(x) * (1 + bcast(t, x)) + bcast(c, x),
        time_sampler=lambda n, p, **kw: 0.05 + 0.9 * torch.rand(n, generator=kw["generator"]),
        latents=lambda noise, n, progress: (noise.randn(n, length, d), None), condition=condition,
        time_shape=(length,))
    loss, _ = obj.generator_loss(Noise(0), b, Progress(0, 1))
    t = seen["t"]
    assert t.shape == (b, length) and not seen["cond_grad"]
    assert (t.std(1) > 0).all()  # each token its own time
    c = seen["x0"].detach().sum((1, 2))
    critics = Critics(process, teacher=lambda x, s: torch.tanh(x) * (1 + bcast(s, x)) + bcast(c, x),
                      fake=lambda x, s: Fake()(x, s, c))
    sim = DIVERGENCES.get("sim")()
    want = sum(sim.loss(seen["x0"][:, i], t[:, i], seen["eps"][:, i], critics) for i in range(length))
    assert torch.allclose(loss, want, rtol=1e-5, atol=1e-6)


# --- its gradient with an exact fake on Gaussian tokens ----------------------------------------------------------

def gaussian_tokens(n=20000, seed=0):
    """Two tokens of 3 numbers at fixed times 0.3 and 0.6: teacher N(m_l, sp_l^2 I) per token, student
    x0 = mu + s eps_z (leaves mu (L, d), s (L,)), the exact fakes of both Gaussians."""
    process = cosine_process()
    g = torch.Generator().manual_seed(seed)
    m = torch.tensor([[1.0, 0.2, -0.4], [-0.5, 0.8, 0.0]], dtype=F64)
    sp = torch.tensor([0.5, 0.9], dtype=F64)
    mu = torch.tensor([[0.3, -1.2, 0.5], [0.4, 0.1, -0.7]], dtype=F64, requires_grad=True)
    s = torch.tensor([0.9, 0.4], dtype=F64, requires_grad=True)
    eps_z = torch.randn(n, 2, 3, generator=g, dtype=F64)
    x0 = mu + s[:, None] * eps_z
    t = torch.tensor([0.3, 0.6], dtype=F64).expand(n, 2)
    eps = torch.randn(n, 2, 3, generator=g, dtype=F64)

    def gaussian_denoiser(mean, std):
        def d(x, tt):
            a, b = bcast(process.alpha(tt), x), bcast(process.sigma(tt), x)
            var = std[:, None] ** 2
            return mean + a * var / (a**2 * var + b**2) * (x - a * mean)
        return d

    critics = Critics(process, teacher=gaussian_denoiser(m, sp), fake=gaussian_denoiser(mu.detach(), s.detach()))
    a, b = process.alpha(t[0]), process.sigma(t[0])  # (L,)
    vp, vq = a**2 * sp**2 + b**2, a**2 * s.detach() ** 2 + b**2
    return process, critics, x0, t, eps, eps_z, mu, s, m, sp, a, b, vp, vq


def per_sample(div, x0, t, eps, eps_z, critics):
    """Per-sample gradients of the per-example loss w.r.t. mu (L, d) and s (L,): rows of d loss_b / d x0_b."""
    loss = div.loss(x0, t, eps, critics)
    (gx,) = torch.autograd.grad(loss.sum(), x0)
    return gx, (gx * eps_z).sum(-1)


def close(samples, want, k=4.0):
    """Mean of per-sample values within k standard errors of `want`, and `want` far from zero in those units
    (so a flipped sign fails)."""
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])
    assert ((mean - want).abs() < k * se + 1e-12).all(), (mean, want, se)
    assert (want.abs() > 3 * k * se).all(), (want, se)


def test_ikl_gradient_with_the_exact_fake_is_the_weighted_gaussian_kl_gradient():
    """Pathwise IKL (weighting sigma2, w = sigma^2/alpha^2) per token: E[d loss / d mu] = w a^2 (mu - m) / v_p and
    E[d loss / d s] = w d a^2 s (1/v_p - 1/v_q), the derivatives of KL(N(a mu, v_q I) || N(a m, v_p I)) at the
    token's time, v = a^2 std^2 + sigma^2."""
    # catches (seen) the gap's sign in pathwise (fake - teacher -> teacher - fake) and sigma2's alpha^2 dropped
    process, critics, x0, t, eps, eps_z, mu, s, m, sp, a, b, vp, vq = gaussian_tokens()
    gx, gs = per_sample(DIVERGENCES.get("ikl")(), x0, t, eps, eps_z, critics)
    w = (b / a) ** 2
    close(gx, (w * a**2 / vp)[:, None] * (mu.detach() - m))
    close(gs, w * 3 * a**2 * s.detach() * (1 / vp - 1 / vq))


def test_sim_l2_gradient_with_the_exact_fake_is_half_the_frozen_sampling_fisher_gradient():
    """SIM with d = ||y||^2 (sid's distance, alpha = 1, unit weight), per token: E[d loss / d mu] =
    a^2 (mu - m) / (v_p v_q), E[d loss / d s] = 2 d a^2 s (1/(v_p v_q) - 1/v_q^2) (Term1 / 2 of MATH.md for Gaussians):
    descending it moves mu toward m. The pseudo-Huber loss with c = 1000 is the same over 2c."""
    # catches (seen) `0.5 *` -> `-0.5 *` in ScoreDivergence.loss (mu pushed away from m) and the distance taken of
    # s_q - s_p (its derivative flips sign). (s_q - g -> s_q + g is invisible here: for Gaussians d y / d x_t is
    # constant and E[s_q] = E[g] = 0, so only the variance changes.)
    process, critics, x0, t, eps, eps_z, mu, s, m, sp, a, b, vp, vq = gaussian_tokens()
    want_mu = (a**2 / (vp * vq))[:, None] * (mu.detach() - m)
    want_s = 2 * 3 * a**2 * s.detach() * (1 / (vp * vq) - 1 / vq**2)
    gx, gs = per_sample(DIVERGENCES.get("sid")(alpha=1.0, weighting="unit"), x0, t, eps, eps_z, critics)
    close(gx, want_mu)
    close(gs, want_s)
    assert (gx.mean(0) * (mu.detach() - m) > 0).all()  # a descent step moves every coordinate toward m
    c = 1000.0
    gx, gs = per_sample(DIVERGENCES.get("sim")(c=c, alpha=1.0, weighting="unit"), x0, t, eps, eps_z, critics)
    close(2 * c * gx, want_mu)
    close(2 * c * gs, want_s)
