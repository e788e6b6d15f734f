"""Image backend: students start as the teacher, teacher losses are the native ones, bad input fails early."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from image_fixtures import EDM, FLOW, tiny_digits_teacher, tiny_unet, write_teacher

from unidistill.engine.cli import main
from unidistill.engine.process import DiscreteVPProcess, RectifiedFlowProcess, VPCosineProcess
from unidistill.engine.teach import prediction_weight
from unidistill.modalities.shared.denoiser import time_of_sigma
from unidistill.modalities.shared.student import StudentGenerator
from unidistill.modalities.shared.teacher import load_teacher

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def edm_teacher(tmp_path_factory) -> Path:
    return tiny_digits_teacher(tmp_path_factory.mktemp("edm") / "t")


def test_student_starts_as_the_teacher_one_step_denoiser(edm_teacher):
    """x0 = G(z, c) = D(sigma_init z, t_init, c) for the copy of the teacher, before any update."""
    teacher = load_teacher(edm_teacher)
    den = teacher.denoiser
    t1 = time_of_sigma(den.process, 2.5)
    gen = StudentGenerator(den, [t1])
    z, c = torch.randn(4, 1, 1, 8, 8), torch.tensor([0, 3, 7, 9])
    expected = den(2.5 * z[:, 0], torch.full((4,), 2.5), c)
    torch.testing.assert_close(gen(z, c), expected)


def test_two_step_student_renoises_its_first_estimate(edm_teacher):
    den = load_teacher(edm_teacher).denoiser
    gen = StudentGenerator(den, [2.5, 0.8])
    z, c = torch.randn(3, 2, 1, 8, 8), torch.tensor([1, 2, 3])
    x1 = den(2.5 * z[:, 0], torch.full((3,), 2.5), c)
    torch.testing.assert_close(gen(z, c), den(x1 + 0.8 * z[:, 1], torch.full((3,), 0.8), c))
    with pytest.raises(ValueError, match="decreasing"):
        StudentGenerator(den, [0.8, 2.5])


@pytest.mark.parametrize("process,prediction", [
    (RectifiedFlowProcess(), "velocity"), (DiscreteVPProcess(), "eps"), (VPCosineProcess(), "v"),
    (DiscreteVPProcess(), "x0")])
def test_prediction_weight_gives_the_native_loss(process, prediction):
    """lambda(t) ||D - x0||^2 equals ||pred(D) - pred(x0)||^2 for the prediction the teacher is trained on."""
    g = torch.Generator().manual_seed(0)
    x0, eps, d = (torch.randn(6, 1, 4, 4, generator=g) for _ in range(3))
    t = process.t_min + (process.t_max - process.t_min) * torch.rand(6, generator=g).clamp(0.05, 0.95)
    x_t = process.add_noise(x0, t, eps)
    native = (process.from_denoiser(d, x_t, t, prediction) - process.from_denoiser(x0, x_t, t, prediction))
    lhs = prediction_weight(process, prediction)(t, process) * ((d - x0) ** 2).mean((1, 2, 3))
    torch.testing.assert_close(lhs, (native**2).mean((1, 2, 3)), rtol=1e-4, atol=1e-6)


def write_config(path: Path, **cfg) -> str:
    base = {"modality": "image", "distill": {"divergence": {"name": "sim"}}, "eval": {"n_samples": 20},
            "train": {"steps": 2, "batch_size": 4, "progress": False, "checkpoint_every": 1}}
    path.write_text(yaml.safe_dump({**base, **cfg}))
    return str(path)


def one_line_error(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("overrides,expected", [
    ({"teacher": "/no/such/folder"}, "neither a shipped teacher"),
    ({"student_sigmas": [0.8, 2.5]}, "student_sigmas must decrease"),
    ({"student_sigmas": [-1.0]}, "config key student_sigmas must be > 0, got [-1.0]"),
    ({"student_sigmas": [90.0]}, "student_sigmas [90.0] lie outside the teacher's noise levels [0.002, 80]"),
    ({"distill": {"reward": {"name": "nope", "alpha": 0.1}}},
     "reward.name: unknown reward 'nope'; choose one of: classifier, contrast"),
    ({"distill": {"reward": {"name": "contrast"}}}, "needs 'alpha' (the weight of -reward in the generator"),
    ({"distill": {"divergence": {"name": "sim"}, "discriminator": {"width": 8}}}, "'sim' uses no discriminator"),
    ({"distill": {"divergence": {"name": "fdiv"}, "discriminator": {"widht": 8}}},
     "distill.discriminator.widht is not an option of this modality's discriminator; allowed: width"),
    ({"distill": {"divergence": {"name": "didi"}}}, "'didi' is a policy-gradient estimator for discrete tokens"),
    ({"divergence": {"name": "sim"}}, "unknown config key divergence (did you mean distill.divergence?)"),
    ({"distill": {"divergence": {"name": "fdiv"}, "reward": {"name": "contrast", "alpha": 0.1, "gain": 2}}},
     "distill.reward.gain is not an option of 'contrast'; allowed: none"),
    ({"distill": {"time_sampler": {"name": "karras", "u_max": 2.0}}},
     "distill.time_sampler.u_max must be in (0, 1], got 2.0"),
])
def test_bad_student_config_fails_in_one_line(overrides, expected, edm_teacher, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", **{"teacher": str(edm_teacher), **overrides})
    err = one_line_error(["distill", cfg, "--out", str(tmp_path / "run")], capsys)
    assert expected in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "teacher_pool.safetensors").exists()  # refused before the pool is drawn


def test_non_finite_teacher_fails_before_training_and_keeps_checkpoints(edm_teacher, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["distill", write_config(tmp_path / "ok.yaml", teacher=str(edm_teacher)), "--out", str(run)]) == 0
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (run / "checkpoints").rglob("*") if p.is_file()}
    net = tiny_unet()
    with torch.no_grad():
        net.conv_out.bias.fill_(float("nan"))
    broken = write_teacher(tmp_path / "broken", net, EDM)
    err = one_line_error(["distill", write_config(tmp_path / "bad.yaml", teacher=str(broken)), "--out", str(run)],
                         capsys)
    assert "non-finite" in err
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (run / "checkpoints").rglob("*") if p.is_file()}
    assert before == after


def test_classifier_reward_and_real_data_need_a_digits_teacher(tmp_path, capsys):
    rgb = write_teacher(tmp_path / "rgb", tiny_unet(num_class_embeds=11, size=8, channels=3), FLOW)
    cfg = write_config(tmp_path / "c.yaml", teacher=str(rgb), distill={
        "reward": {"name": "classifier", "alpha": 0.01}, "time_sampler": {"name": "uniform"},
        "aux_time_sampler": {"name": "uniform"}})
    assert "scores 8x8 digits" in one_line_error(["distill", cfg, "--out", str(tmp_path / "r1")], capsys)
    cfg = write_config(tmp_path / "d.yaml", teacher=str(rgb), distill={
        "divergence": {"name": "fdiv"}, "discriminator": {"width": 8}, "real": "data",
        "time_sampler": {"name": "uniform"}, "aux_time_sampler": {"name": "uniform"}}, real_pool=4)
    err = one_line_error(["distill", cfg, "--out", str(tmp_path / "r2")], capsys)
    assert "distill.real = 'data' is not a source of real samples here; choose one of: teacher" in err


TEACH = Path(__file__).parents[1] / "examples" / "image" / "digits_teacher.yaml"


@pytest.mark.parametrize("override,expected", [
    ("network.num_class_embeds=5", "num_class_embeds"),
    ("network.in_channels=3", "channels"),
    ("network.sample_size=16", "sample_size"),
    ("scheduler._class_name=KarrasVeScheduler", "unsupported scheduler"),
    ("scheduler.prediction_type=sample", "unsupported prediction_type"),
    ("data=/no/such.npz", "neither 'digits' nor an existing .npz"),
])
def test_bad_teacher_config_fails_in_one_line(override, expected, tmp_path, capsys):
    err = one_line_error(["teach", str(TEACH), "--out", str(tmp_path), "--set", override], capsys)
    assert expected in err, err


def test_teach_reads_an_npz_and_checks_its_labels(tmp_path, capsys):
    x = np.random.default_rng(0).uniform(-1, 1, (16, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.full(16, 12))
    err = one_line_error(["teach", str(TEACH), "--out", str(tmp_path / "r"), "--set", f"data={tmp_path / 'd.npz'}"],
                         capsys)
    assert "num_class_embeds" in err and "14" in err
