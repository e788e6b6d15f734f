"""The MAR backend end to end on tiny networks: `unidistill teach` writes a MAR folder that loads; MARVAL, the DD
baseline and MARVAL-RL run through the command line and write their metrics and pictures; bad input fails in one
line before training; the one-step student starts as the teacher's head at sigma 2.5, sees through its context only
when asked to, and the teacher conditions each token on exactly the context the student gave it; the guided head
teacher, the teacher's sampler and the classifier reward against direct computations. Each comment names a
mutation of the code under test that the test catches (those marked "seen" were applied by monkeypatching and seen
to fail)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from unidistill.engine.cli import main
from unidistill.modalities.mar.generators import Latent, OneStepMAR
from unidistill.modalities.mar.io import tiny_teacher
from unidistill.modalities.mar.model import MAR, Cond, FakeHead, HeadTeacher, Teacher, load_mar, save_mar
from unidistill.modalities.mar.sampler import sample_mar
from unidistill.modalities.mar.schedule import guidance_scales, masked_after, random_orders, step_of_token

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = {"progress": False, "threads": 1, "checkpoint_every": 100, "log_every": 1}
TEACH = {"patch": 2, "transformer": {"width": 16, "depth": 1, "decoder_depth": 1, "heads": 2, "buffer": 2},
         "head": {"width": 16, "depth": 1}, "eval": {"n_samples": 10, "iters": 2, "steps": 2},
         "train": {"steps": 3, "batch_size": 8, **TRAIN}}


def write(folder: Path, cfg: dict, name: str = "c.yaml") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(yaml.safe_dump({"modality": "mar", **cfg}))
    return str(folder / name)


def distill_cfg(teacher: Path, **over) -> dict:
    cfg = {"teacher": {"path": str(teacher), "guidance": 2.0}, "generator": {"iters": 2},
           "distill": {"divergence": {"name": "sim"}}, "eval": {"n_samples": 10, "iters": 2},
           "train": {"steps": 3, "batch_size": 4, **TRAIN}}
    for key, value in over.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def one_line_error(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def log_columns(run: Path) -> list[str]:
    with open(run / "log.csv") as f:
        return next(csv.reader(f))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The tiny random MAR teacher folder (patch 2: 16 tokens of 4 numbers)."""
    return tiny_teacher(tmp_path_factory.mktemp("mar"))


@pytest.fixture(scope="module")
def model(folder):
    return load_mar(folder)[0]


# --- runs through the command line -------------------------------------------------------------------------------

def test_teach_writes_a_mar_folder_that_load_mar_reads(tmp_path):
    """`unidistill teach` 3 steps: run/teacher holds mar.json (format, patch, sizes, mask_min) and
    model.safetensors; load_mar builds the same sizes and the teacher samples; metrics name the NFEs."""
    # catches (seen) mar.json written without model.info() (sizes and patch lost), and the teacher sampler's head
    # NFE counted per row instead of per token (`steps * b * n * halves` -> `steps * b * halves`)
    run = tmp_path / "run"
    assert main(["teach", write(tmp_path, TEACH), "--out", str(run)]) == 0
    info = json.loads((run / "teacher" / "mar.json").read_text())
    assert info["format"] == "unidistill-mar-1" and info["patch"] == 2 and info["mask_min"] == 0.7
    assert info["transformer"] == {**TEACH["transformer"], "label_dropout": 0.1} and info["head"] == TEACH["head"]
    model, info2 = load_mar(run / "teacher")
    assert info2 == info and model.length == 16 and model.token_dim == 4 and model.transformer.width == 16
    assert not model.training
    tokens = sample_mar(model, torch.arange(3), iters=2, steps=2, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (3, 16, 4) and torch.isfinite(tokens).all()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["transformer_nfe"] == 2 and metrics["head_nfe"] == 2 * 16  # K passes; T = 2 steps per token
    assert "head_mse" in log_columns(run)


def test_load_mar_refuses_what_is_not_a_mar_folder(folder, tmp_path):
    # catches (seen) the format check dropped (a foreign mar.json loads) and a size mismatch left as a RuntimeError
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mar.json").write_text(json.dumps({**json.loads((folder / "mar.json").read_text()), "format": "x"}))
    (bad / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="is not a unidistill-mar-1 file"):
        load_mar(bad)
    info = json.loads((folder / "mar.json").read_text())
    (bad / "mar.json").write_text(json.dumps({**info, "head": {"width": 32, "depth": 1}}))
    with pytest.raises(ValueError, match="does not hold this MAR's weights"):
        load_mar(bad)
    with pytest.raises(FileNotFoundError, match="no mar.json"):
        load_mar(tmp_path)


def test_marval_run_writes_metrics_and_the_unmasking_picture(folder, tmp_path):
    """MARVAL (sim, guidance 2) 3 steps: metrics.json has digits-FID, class accuracy, the classifier's log-prob and
    the NFEs of a one-step head over K = 2 iterations (2 transformer passes, 16 head evaluations per image); the
    log has the divergence and the fake score's loss; samples holds the grid and the unmasking picture."""
    # catches (seen) the watch charging the head per row instead of per token (head_nfe 2 instead of 16)
    run = tmp_path / "run"
    assert main(["distill", write(tmp_path, distill_cfg(folder)), "--out", str(run)]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert {"digits_fid", "class_accuracy", "classifier_log_prob", "transformer_nfe", "head_nfe"} <= set(m)
    assert m["transformer_nfe"] == 2 and m["head_nfe"] == 16
    assert 0 <= m["class_accuracy"] <= 1 and math.isfinite(m["digits_fid"])
    assert list((run / "samples").glob("*_unmasking.png")) and list((run / "samples").glob("step_*[0-9].png"))
    assert {"divergence_loss", "loss/fake"} <= set(log_columns(run))


def test_dd_baseline_and_rl_run(folder, tmp_path):
    """The DD baseline (divergence none, regulariser dd_mse) and MARVAL-RL (classifier reward through the K
    iterations) each run 2 steps and log their terms; no fake score is trained by either."""
    # catches (seen) the dd regulariser not passed to the objective (no dd_mse column)
    dd = distill_cfg(folder, baseline={"name": "dd", "steps": 3}, distill={"divergence": {"name": "none"}},
                     train={"steps": 2})
    assert main(["distill", write(tmp_path, dd, "dd.yaml"), "--out", str(tmp_path / "dd")]) == 0
    cols = log_columns(tmp_path / "dd")
    assert "dd_mse" in cols and "loss/fake" not in cols
    rl = distill_cfg(folder, generator={"context_grad": True}, train={"steps": 2},
                     distill={"divergence": {"name": "none"}, "reward": {"name": "classifier", "alpha": 1.0}})
    assert main(["distill", write(tmp_path, rl, "rl.yaml"), "--out", str(tmp_path / "rl")]) == 0
    cols = log_columns(tmp_path / "rl")
    assert any("reward" in c for c in cols) and "loss/fake" not in cols, cols
    # Reward-Instruct's anchor is a copy of the generator: the alignment must hand it the generator's latent
    # condition (labels and orders), not the per-token condition the critics see (which failed before)
    ri = distill_cfg(folder, generator={"context_grad": True}, train={"steps": 2},
                     distill={"divergence": {"name": "none"}, "reward": {"name": "classifier", "alpha": 0.1},
                              "alignment": {"name": "reward_instruct", "weight": 1.0}})
    assert main(["distill", write(tmp_path, ri, "ri.yaml"), "--out", str(tmp_path / "ri")]) == 0
    assert "anchor" in log_columns(tmp_path / "ri")


@pytest.mark.parametrize("override,expected", [
    ("generator.iters=17", "config key generator.iters: K = 17 iterations, but the teacher's images have 16 tokens "
                           "(2x2 patches); choose 1 .. 16"),
    ("eval.iters=0", "eval.iters"),
    ("generator.sigmas=[0.5, 2.5]", "config key generator.sigmas: head sigmas must decrease strictly"),
    ("generator.sigmas=[1000.0]", "outside the head's range"),
    ("teacher.cfg_schedule=cosine", "teacher.cfg_schedule"),
    ("baseline.name=dd", "config key baseline: 'dd' regresses the teacher's DDIM output on its own"),
    ("distill.divergence.name=fdiv", "distill.divergence"),
    # an empty list would make the student return its noise
    ("generator.sigmas=[]", "config key generator.sigmas: head sigmas must hold at least one value"),
    # sim holds each token's context fixed; a gradient through the context would be inconsistent with it
    ("generator.context_grad=true", "config key generator.context_grad: 'sim' matches each token"),
    ("eval.guidance=2.0", "eval.guidance"),  # students sample without guidance: the key does not exist
])
def test_bad_distill_input_fails_in_one_line_before_training(folder, override, expected, tmp_path, capsys):
    cfg = write(tmp_path, distill_cfg(folder))
    err = one_line_error(["distill", cfg, "--out", str(tmp_path / "run"), "--set", override], capsys)
    assert expected in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_teacher_folders_that_do_not_fit_fail_in_one_line(folder, tmp_path, capsys):
    """A folder without mar.json; a patch-4 teacher (4 tokens) asked for K = 8 iterations."""
    # catches (seen) io.check_iters reading the length of 2x2 patches whatever the teacher's patch
    cfg = write(tmp_path, distill_cfg(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    err = one_line_error(["distill", cfg, "--out", str(tmp_path / "a")], capsys)
    assert "config key teacher.path" in err and "no mar.json" in err, err
    p4 = tiny_teacher(tmp_path, patch=4)
    cfg = write(tmp_path, distill_cfg(p4, generator={"iters": 8}))
    err = one_line_error(["distill", cfg, "--out", str(tmp_path / "b")], capsys)
    assert "4 tokens (4x4 patches); choose 1 .. 4" in err, err
    assert main(["distill", write(tmp_path, distill_cfg(p4, generator={"iters": 4}, train={"steps": 1}), "ok.yaml"),
                 "--out", str(tmp_path / "c")]) == 0
    big = tmp_path / "big"  # a MAR folder of 16x16 images: not what the digits evaluator and reward read
    save_mar(MAR(16, 1, 4, 10, {"width": 16, "depth": 1, "decoder_depth": 1, "heads": 2, "buffer": 2},
                 {"width": 16, "depth": 1}), big)
    err = one_line_error(["distill", write(tmp_path, distill_cfg(big, generator={"iters": 4}), "big.yaml"),
                          "--out", str(tmp_path / "d")], capsys)
    assert "config key teacher.path: the teacher makes 16x16 images of 1 channels in 10 classes" in err, err


@pytest.mark.parametrize("override,expected", [
    ("patch=3", "config key patch: patch 3 does not tile 8x8 images; choose one of: 1, 2, 4, 8"),
    ("eval.iters=17", "config key eval.iters: K = 17 is more than the 16 tokens of 2x2 patches; choose 1 .. 16"),
    ("transformer.heads=3", "config key transformer.heads: width 16 is not divisible by 3 heads"),
])
def test_bad_teach_input_fails_in_one_line(override, expected, tmp_path, capsys):
    err = one_line_error(["teach", write(tmp_path, TEACH), "--out", str(tmp_path / "run"), "--set", override], capsys)
    assert expected in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()


# --- the student -------------------------------------------------------------------------------------------------

def t_of_ratio(r: float, s: float = 0.008) -> float:
    """The cosine process's time whose sigma/alpha is r, in closed form: alpha = cos(pi/2 (t+s)/(1+s)) / f0 and
    alpha^2 = 1 / (1 + r^2)."""
    f0 = math.cos(math.pi / 2 * s / (1 + s))
    return 2 / math.pi * math.acos(f0 / math.sqrt(1 + r * r)) * (1 + s) - s


def test_one_step_student_starts_as_the_teacher_head_at_sigma_2_5(model):
    """head_map(eps, z) = (x - s eps_teacher(x, t, z)) / a with x = eps, a = 1/sqrt(1 + 2.5^2), s = 2.5 a, t the
    time of sigma/alpha 2.5; two steps [2.5, 0.5] add the DDIM move x' = a' D + s' eps_theta. The forward at K = 1
    is the head map on each token's own noise with z from the class alone."""
    # catches (seen) `d = (x - s * e) / a` -> `(x + s * e) / a`, and the DDIM move re-noising with the input noise
    # instead of the predicted one
    g = torch.Generator().manual_seed(0)
    eps, z = torch.randn(6, 4, generator=g), torch.randn(6, 16, generator=g)
    gen = OneStepMAR(model, iters=2, sigmas=[2.5])
    assert gen.times == pytest.approx([t_of_ratio(2.5)], abs=1e-9)
    a = 1 / math.sqrt(1 + 2.5**2)
    with torch.no_grad():
        want = (eps - 2.5 * a * model.head(eps, torch.full((6,), gen.times[0]), z)) / a
        assert torch.allclose(gen.head_map(eps, z), want, atol=1e-5)
        assert (want - eps).abs().max() > 1e-3  # the head's prediction matters: the comparison can fail
        two = OneStepMAR(model, iters=2, sigmas=[2.5, 0.5])
        t1, t2 = t_of_ratio(2.5), t_of_ratio(0.5)
        a2 = 1 / math.sqrt(1 + 0.5**2)
        e1 = model.head(eps, torch.full((6,), t1), z)
        x1 = a2 * (eps - 2.5 * a * e1) / a + 0.5 * a2 * e1
        want2 = (x1 - 0.5 * a2 * model.head(x1, torch.full((6,), t2), z)) / a2
        assert torch.allclose(two.head_map(eps, z), want2, atol=1e-5)
        one = OneStepMAR(model, iters=1, sigmas=[2.5])
        labels, noise = torch.tensor([3, 7]), torch.randn(2, 16, 4, generator=g)
        order = random_orders(2, 16, g)
        x = one(noise, Latent(labels, order, 1))
        zc = model.transformer(torch.zeros(2, 16, 4), torch.zeros(2, 16, dtype=torch.bool), labels)
        assert torch.allclose(x, one.head_map(noise.reshape(32, 4), zc.reshape(32, -1)).reshape(2, 16, 4), atol=1e-5)
    with pytest.raises(ValueError, match="decrease strictly"):
        OneStepMAR(model, iters=2, sigmas=[0.5, 2.5])


@pytest.mark.parametrize("context_grad", [False, True])
def test_context_grad_decides_whether_later_tokens_see_earlier_noise(model, context_grad):
    """K = 2: d(tokens revealed at iteration 1) / d(noise of the tokens revealed at iteration 0) is zero without
    context_grad and non-zero with it; their own noise always reaches them."""
    # catches (seen) the `tokens.detach()` of the context dropped (or applied with context_grad)
    gen = OneStepMAR(model, iters=2, sigmas=[2.5], context_grad=context_grad)
    g = torch.Generator().manual_seed(1)
    order = random_orders(3, 16, g)
    noise = torch.randn(3, 16, 4, generator=g, requires_grad=True)
    x = gen(noise, Latent(torch.tensor([0, 4, 9]), order, 2))
    steps = step_of_token(order, 2)
    (grad,) = torch.autograd.grad((x * (steps == 1)[..., None]).square().sum(), noise)
    first, second = grad[steps == 0], grad[steps == 1]
    assert second.abs().sum(-1).gt(0).all()
    assert bool(first.abs().sum() > 0) == context_grad


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_teacher_conditions_each_token_on_the_context_the_student_gave_it(model, guidance):
    """Teacher.condition(x0, latent): token i's z is the z the student's head used for it (its context: the tokens
    of earlier iterations, read from the finished sample; later tokens are masked, so their values do not leak);
    visible[b, i, j] = step_j < step_i; scale = the iteration's guidance; z_null = the null class's z."""
    # catches (seen) `steps < k` -> `steps <= k` in contexts (a token sees its own iteration) and the null half of
    # the batched pass taken from the conditional half
    iters = 4
    gen = OneStepMAR(model, iters=iters, sigmas=[2.5])
    used = []
    head_map = gen.head_map
    gen.head_map = lambda eps, z: (used.append(z), head_map(eps, z))[1]
    g = torch.Generator().manual_seed(2)
    labels, order = torch.tensor([1, 5, 8]), random_orders(3, 16, g)
    latent = Latent(labels, order, iters)
    with torch.no_grad():
        x0 = gen(torch.randn(3, 16, 4, generator=g), latent)
        cond = Teacher(model.transformer, HeadTeacher(model.head, model.process), guidance).condition(x0, latent)
    m, steps = masked_after(iters, 16), step_of_token(order, iters)
    for k in range(iters):
        idx = order[:, m[k + 1]:m[k]]
        want = used[k].reshape(3, idx.shape[1], -1)
        got = cond.z.gather(1, idx[..., None].expand(-1, -1, want.shape[-1]))
        assert torch.allclose(got, want, atol=1e-5), k
    assert torch.equal(cond.visible, steps[:, None, :] < steps[:, :, None])
    assert torch.equal(cond.scale, guidance_scales(guidance, iters, 16)[steps])
    assert torch.equal(cond.tokens, x0) and torch.equal(cond.labels, labels)
    if guidance == 1.0:
        assert cond.z_null is None
    else:
        null = torch.full_like(labels, 10)  # the null class is the table's last row
        for k in range(iters):
            zn = model.transformer(x0, steps < k, null)
            here = steps == k
            assert torch.allclose(cond.z_null[here], zn[here], atol=1e-5)


def test_head_teacher_guides_eps_and_the_fake_is_conditional(model):
    """HeadTeacher: D = D_null + w (D_c - D_null) per token with w = cond.scale (eps guided, D by Tweedie);
    FakeHead: the conditional D whatever the scale."""
    # catches (seen) cond and null swapped in HeadTeacher.forward (D_c + w (D_null - D_c))
    g = torch.Generator().manual_seed(3)
    b, length, d, width = 2, 16, 4, 16
    x_t, t = torch.randn(b, length, d, generator=g), 0.1 + 0.8 * torch.rand(b, length, generator=g)
    z, z_null = torch.randn(b, length, width, generator=g), torch.randn(b, length, width, generator=g)
    w = 1 + 3 * torch.rand(b, length, generator=g)
    cond = Cond(z, z_null, w, x_t, torch.zeros(b, length, length, dtype=torch.bool), torch.zeros(b, dtype=torch.long))
    teacher, fake = HeadTeacher(model.head, model.process), FakeHead(model.head, model.process)
    a, s = model.process.alpha(t)[..., None], model.process.sigma(t)[..., None]
    with torch.no_grad():
        def den(zz):
            return (x_t - s * model.head(x_t.reshape(-1, d), t.reshape(-1), zz.reshape(-1, width)).reshape(b, length, d)
                    ) / a
        d_c, d_u = den(z), den(z_null)
        assert (d_c - d_u).abs().max() > 1e-3
        assert torch.allclose(teacher(x_t, t, cond), d_u + w[..., None] * (d_c - d_u), atol=1e-5)
        assert torch.allclose(fake(x_t, t, cond), d_c, atol=1e-6)


def test_teacher_sampler_one_step_one_iteration_is_the_guided_tweedie_step(model):
    """sample_mar at K = 1, T = 1: each token is (x - sigma eps_g) / alpha at t_max with x its noise and
    eps_g = eps_u + w_0 (eps_c - eps_u) (the conditional half first), written at its own position; w_0 is MAR's
    linear scale of the one iteration, 1 + (w - 1)(L - 1)/L."""
    # catches (seen) e_c and e_u swapped in sample_mar's eps_fn, and unmask writing to rank positions (0, 1, ...)
    # instead of the order's token positions
    labels, w = torch.tensor([2, 6]), 3.0
    out = sample_mar(model, labels, iters=1, steps=1, guidance=w, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    order = random_orders(2, 16, g)
    x = torch.randn(2 * 16, 4, generator=g)
    process = model.process
    t = torch.full((32,), process.t_max)
    t64 = torch.tensor(process.t_max, dtype=torch.float64)  # the chain's coefficients are float64 (a ~ 1.6e-3 here)
    with torch.no_grad():
        empty = torch.zeros(2, 16, dtype=torch.bool)
        zc = model.transformer(torch.zeros(2, 16, 4), empty, labels)
        zu = model.transformer(torch.zeros(2, 16, 4), empty, torch.full_like(labels, 10))
        zc, zu = (zz.gather(1, order[..., None].expand(-1, -1, zz.shape[-1])).reshape(32, -1) for zz in (zc, zu))
        e_c, e_u = model.head(x, t, zc), model.head(x, t, zu)
        a, s = float(process.alpha(t64)), float(process.sigma(t64))
        w0 = 1 + (w - 1) * 15 / 16
        vals = ((x - s * (e_u + w0 * (e_c - e_u))) / a).reshape(2, 16, 4)
    want = torch.zeros(2, 16, 4).scatter(1, order[..., None].expand(-1, -1, 4), vals)
    assert torch.allclose(out, want, rtol=1e-5, atol=1e-4)


def test_classifier_reward_reads_every_patch_size():
    """The reward of tokens is the classifier's log-prob of the image they tile, for patches 1, 2, 4 and 8."""
    # catches (seen) the patch inferred as `2 if d == 4 else 4` (patch 1 and 8 teachers: unpatchify fails), the bug
    # this test found
    from unidistill.modalities.mar.distill import classifier_reward
    from unidistill.modalities.mar.tokens import patchify

    reward = classifier_reward()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1
    cond = Cond(None, None, None, None, None, torch.tensor([0, 3, 7]))
    want = reward(patchify(x, 2), cond)
    assert want.shape == (3,) and torch.isfinite(want).all()
    for p in (1, 4, 8):
        assert torch.allclose(reward(patchify(x, p), cond), want, atol=1e-6)
