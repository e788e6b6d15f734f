"""Diffusers teachers and students on tiny random models: the teacher denoiser against direct diffusers
calls, classifier-free guidance, DiT, a Stable-Diffusion-shaped latent teacher, the student pipeline."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import yaml
from image_fixtures import DDPM, EDM, FLOW, tiny_digits_teacher, tiny_sd_teacher, tiny_unet, write_teacher

from unidistill.modalities.shared.denoiser import time_of_sigma
from unidistill.modalities.shared.student import StudentGenerator
from unidistill.modalities.shared.teacher import load_teacher

pytestmark = pytest.mark.usefixtures("one_thread")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def assert_rel(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert rel_err(a, b) < tol, rel_err(a, b)


def assert_time_sensitive(net_call, timestep: torch.Tensor) -> None:
    """The direct network output must move when its timestep input moves by 5%, or a wrong time scale in
    denoiser.py could pass the comparisons unnoticed."""
    assert rel_err(net_call(timestep * 1.05), net_call(timestep)) > 1e-3


def one_line(err: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return tiny_sd_teacher(tmp_path_factory.mktemp("sd") / "teacher")


@pytest.fixture(scope="module")
def edm_teacher(tmp_path_factory):
    return load_teacher(tiny_digits_teacher(tmp_path_factory.mktemp("edm") / "teacher"))


# ------------------------------------------------------------------ a. teacher denoiser vs diffusers
@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
def test_edm_matches_diffusers_preconditioning(tmp_path, pred):
    from diffusers import EDMEulerScheduler

    cfg = {**EDM, "prediction_type": pred}
    torch.manual_seed(0)
    teacher = load_teacher(write_teacher(tmp_path, tiny_unet(), cfg))
    den, net = teacher.denoiser, teacher.denoiser.net
    sched = EDMEulerScheduler.from_config(cfg)
    assert sched.config.sigma_data == 0.75  # not the default 0.5: a hard-coded sigma_data would fail
    x, sigma, c = torch.randn(3, 1, 8, 8) * 3, torch.tensor([0.05, 1.0, 20.0]), torch.tensor([0, 3, 9])
    s4 = sigma.view(-1, 1, 1, 1)
    with torch.no_grad():
        call = lambda noise: net(sched.precondition_inputs(x, s4), noise, class_labels=c).sample
        ref = sched.precondition_outputs(x, call(sched.precondition_noise(sigma)), s4)
        assert_time_sensitive(call, sched.precondition_noise(sigma))
        assert_rel(den(x, sigma, c), ref)
        other = EDMEulerScheduler.from_config({**cfg, "prediction_type": "epsilon" if pred != "epsilon" else
                                               "v_prediction"})
        assert rel_err(other.precondition_outputs(x, call(sched.precondition_noise(sigma)), s4), ref) > 1e-2


@pytest.mark.parametrize("pred,schedule", [("epsilon", "linear"), ("v_prediction", "scaled_linear"),
                                           ("sample", "linear"), ("epsilon", "squaredcos_cap_v2")])
def test_ddpm_family_matches_scheduler_step(tmp_path, pred, schedule):
    from diffusers import DDPMScheduler

    cfg = {**DDPM, "prediction_type": pred, "beta_schedule": schedule}
    torch.manual_seed(0)
    teacher = load_teacher(write_teacher(tmp_path, tiny_unet(), cfg))
    den, net = teacher.denoiser, teacher.denoiser.net
    sched = DDPMScheduler.from_config({**cfg, "clip_sample": False})
    c = torch.tensor([1, 7])
    for step in (0, 10, 500, 999):
        ts = torch.full((2,), step)
        x0, eps = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
        # the engine's x_t is the diffusers sample at that timestep
        assert_rel(den.process.add_noise(x0, ts.float(), eps), sched.add_noise(x0, eps, ts))
        x_t = sched.add_noise(x0, eps, ts)
        with torch.no_grad():
            call = lambda t, x_t=x_t: net(x_t, t, class_labels=c).sample
            ref = sched.step(call(ts), step, x_t).pred_original_sample
            if step > 0:
                assert_time_sensitive(call, ts.float())
            assert_rel(den(x_t, ts.float(), c), ref)


def test_flow_matching_velocity(tmp_path):
    torch.manual_seed(0)
    teacher = load_teacher(write_teacher(tmp_path, tiny_unet(), FLOW))
    den, net = teacher.denoiser, teacher.denoiser.net
    x, sigma, c = torch.randn(3, 1, 8, 8), torch.tensor([0.1, 0.5, 0.9]), torch.tensor([2, 0, 5])
    with torch.no_grad():
        call = lambda timestep: net(x, timestep, class_labels=c).sample
        assert_time_sensitive(call, sigma * 1000)
        ref = x - sigma.view(-1, 1, 1, 1) * call(sigma * 1000)
        assert_rel(den(x, sigma, c), ref)


# ------------------------------------------------------------------ b. classifier-free guidance
def test_cfg_is_two_separate_calls(edm_teacher):
    den = copy.deepcopy(edm_teacher.denoiser)
    den.guidance_scale = 3.0
    x, t, c = torch.randn(4, 1, 8, 8), torch.tensor([0.3, 1.0, 2.5, 10.0]), torch.tensor([0, 4, 9, 2])
    null = torch.full_like(c, den.num_conds)
    assert den.num_conds == 10
    with torch.no_grad():
        d_c, d_u = den(x, t, c, guidance_scale=1.0), den(x, t, null, guidance_scale=1.0)
        assert rel_err(d_c, d_u) > 1e-3
        assert_rel(den(x, t, c), d_u + 3.0 * (d_c - d_u))


# ------------------------------------------------------------------ c. DiT
def tiny_dit():
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                 num_layers=1, sample_size=8, patch_size=2, num_embeds_ada_norm=10, norm_num_groups=4)


@pytest.fixture(scope="module")
def dit_teacher(tmp_path_factory):
    torch.manual_seed(0)
    cfg = {**DDPM, "variance_type": "learned_range"}
    return load_teacher(write_teacher(tmp_path_factory.mktemp("dit") / "teacher", tiny_dit(), cfg))


def test_dit_learned_sigma(dit_teacher):
    from diffusers import DDPMScheduler

    teacher = dit_teacher
    den, net = teacher.denoiser, teacher.denoiser.net
    assert teacher.network_folder == "transformer" and teacher.shape == (4, 8, 8) and den.num_conds == 10
    sched = DDPMScheduler.from_config({**teacher.scheduler_config, "clip_sample": False})
    x_t, c, step = torch.randn(3, 4, 8, 8), torch.tensor([0, 5, 9]), 400
    ts = torch.full((3,), step)
    with torch.no_grad():
        call = lambda t: net(x_t, timestep=t, class_labels=c).sample
        full = call(ts)
        assert full.shape[1] == 8
        assert_time_sensitive(lambda t: call(t)[:, :4], ts.float())
        # the scheduler drops the learned-variance half itself and converts the epsilon half
        ref = sched.step(full, step, x_t, generator=torch.Generator().manual_seed(0)).pred_original_sample
        out = den(x_t, ts.float(), c)
        assert out.shape == x_t.shape
        assert_rel(out, ref)


def test_dit_student_keeps_its_labels_in_train_mode(dit_teacher):
    student = copy.deepcopy(dit_teacher.denoiser).train()  # as the backend trains students and fake scores
    x, t, c = torch.randn(32, 4, 8, 8), torch.full((32,), 300.0), torch.arange(32) % 10
    torch.manual_seed(0)
    with torch.no_grad():
        trained = student(x, t, c)
        assert torch.equal(trained, student.eval()(x, t, c))


# ------------------------------------------------------------------ d. Stable-Diffusion-shaped latent teacher
def test_sd_shaped_teacher_loads_and_guides(sd_folder):
    from diffusers import DDPMScheduler
    from transformers import AutoTokenizer, CLIPTextModel

    teacher = load_teacher(sd_folder, prompts=["a", "b"], guidance_scale=3)
    den = teacher.denoiser
    assert teacher.shape == (4, 8, 8) and den.num_conds == 2 and teacher.vae is not None
    tok = AutoTokenizer.from_pretrained(sd_folder / "tokenizer")
    enc = CLIPTextModel.from_pretrained(sd_folder / "text_encoder")
    ids = tok(["a", "b", ""], padding="max_length", max_length=16, return_tensors="pt").input_ids
    with torch.no_grad():
        emb = enc(ids).last_hidden_state
        assert_rel(den.cond_table, emb)
        sched = DDPMScheduler.from_config({**teacher.scheduler_config, "clip_sample": False})
        x_t, c, step = torch.randn(2, 4, 8, 8), torch.tensor([1, 0]), 700
        ts = torch.full((2,), step)
        eps_c = den.net(x_t, ts, encoder_hidden_states=emb[c]).sample
        eps_u = den.net(x_t, ts, encoder_hidden_states=emb[[2, 2]]).sample
        guided = eps_u + 3 * (eps_c - eps_u)  # CFG on epsilon = CFG on D (both are affine in the output)
        assert_rel(den(x_t, ts.float(), c), sched.step(guided, step, x_t).pred_original_sample)
        assert teacher.decode(torch.randn(2, 4, 8, 8)).shape == (2, 3, 16, 16)


def test_sd_shaped_distillation_runs(sd_folder, tmp_path):
    from PIL import Image

    from unidistill.engine.cli import main

    cfg = {"modality": "image", "teacher": str(sd_folder), "prompts": ["a", "b c"], "guidance_scale": 3.0,
           "distill": {"divergence": {"name": "sim"}, "time_sampler": {"name": "uniform"},
                       "aux_time_sampler": {"name": "uniform"}},
           "train": {"steps": 2, "batch_size": 4, "progress": False}}
    path = tmp_path / "sd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["distill", str(path), "--out", str(run)]) == 0
    pngs = sorted((run / "samples").glob("*.png"))
    assert pngs
    # 100 pictures of 16x16 (decoded through the VAE, not 8x8 latents): 10 x 17 + 1 pixels, upscaled 4x
    assert Image.open(pngs[-1]).size == (171 * 4, 171 * 4)


def test_prompts_must_match_the_teacher(sd_folder, edm_teacher, tmp_path, capsys):
    from unidistill.engine.cli import main

    with pytest.raises(ValueError) as e:
        load_teacher(sd_folder)
    one_line(e, "prompts")
    with pytest.raises(ValueError) as e:
        load_teacher(edm_teacher.folder, prompts=["a"])
    one_line(e, "prompts")
    for teacher, prompts in ((sd_folder, None), (edm_teacher.folder, ["a"])):
        cfg = {"modality": "image", "teacher": str(teacher), "prompts": prompts, "train": {"steps": 2,
                                                                                          "progress": False}}
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(cfg))
        run = tmp_path / f"run_{prompts is None}"
        assert main(["distill", str(path), "--out", str(run)]) == 2
        assert "prompts" in capsys.readouterr().err
        assert not (run / "checkpoints").exists()


# ------------------------------------------------------------------ e. student pipeline round trip
def make_student(teacher, sigmas, seed=0):
    den = copy.deepcopy(teacher.denoiser)
    den.guidance_scale = 1.0
    torch.manual_seed(seed)
    with torch.no_grad():  # a student that is not the teacher, so saving the wrong weights would show
        for p in den.net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return StudentGenerator(den, [time_of_sigma(den.process, s) for s in sigmas]).eval()


def expected(gen, teacher, n, c, seed=0):
    z = torch.randn(n, gen.n_steps, *teacher.shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return (teacher.decode(gen(z, c)) / 2 + 0.5).clamp(0, 1)


def test_class_student_round_trip(edm_teacher, tmp_path):
    from PIL.Image import Image

    from unidistill.modalities.image.io import load_student, save_student

    folder = tmp_path / "student"
    labels = [0, 3, 9, 9]
    for sigmas in ([2.5], [2.5, 0.5]):  # the second save replaces the first
        gen = make_student(edm_teacher, sigmas)
        assert save_student(gen, edm_teacher, folder) == folder
        assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]  # no .tmp / .old left behind
        pipe = load_student(folder)
        assert pipe.config.student_times == pytest.approx(gen.times.tolist()) and pipe.config.num_conds == 10
        out = pipe(class_labels=labels, generator=torch.Generator().manual_seed(0), output_type="pt")
        assert isinstance(out, torch.Tensor) and out.shape == (4, 1, 8, 8)
        assert_rel(out, expected(gen, edm_teacher, 4, torch.tensor(labels)))
    assert sorted(p.name for p in folder.iterdir()) == ["model_index.json", "scheduler", "unet"]
    arr = pipe(class_labels=labels, generator=torch.Generator().manual_seed(0))
    assert isinstance(arr, np.ndarray) and arr.shape == (4, 8, 8, 1) and arr.min() >= 0 and arr.max() <= 1
    np.testing.assert_allclose(arr, out.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    pil = pipe(class_labels=labels, output_type="pil")
    assert len(pil) == 4 and all(isinstance(p, Image) and p.size == (8, 8) and p.mode == "L" for p in pil)
    assert pipe().shape == (1, 8, 8, 1)
    assert pipe(class_labels=3, num_images=2).shape == (2, 8, 8, 1)
    cycled = pipe(num_images=12, generator=torch.Generator().manual_seed(1), output_type="pt")
    assert_rel(cycled, expected(gen, edm_teacher, 12, torch.arange(12) % 10, seed=1))


def test_text_student_round_trip(sd_folder, tmp_path):
    from unidistill.modalities.image.io import load_student, save_student

    teacher = load_teacher(sd_folder, prompts=["a", "b"], guidance_scale=3)
    gen = make_student(teacher, [2.5, 0.5])
    pipe = load_student(save_student(gen, teacher, tmp_path / "student"))
    assert {"text_encoder", "tokenizer", "vae", "unet"} <= {p.name for p in (tmp_path / "student").iterdir()}
    out = pipe(prompt=["a", "b"], generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.shape == (2, 3, 16, 16)
    assert_rel(out, expected(gen, teacher, 2, torch.tensor([0, 1])))
    assert pipe(prompt="b", num_images=3).shape == (3, 16, 16, 3)
    assert [p.mode for p in pipe(prompt="a", output_type="pil")] == ["RGB"]


def test_dit_student_keeps_transformer_folder(dit_teacher, tmp_path):
    from diffusers import DiTTransformer2DModel

    from unidistill.modalities.image.io import load_student, save_student

    gen = make_student(dit_teacher, [2.5])
    folder = save_student(gen, dit_teacher, tmp_path / "student")
    assert (folder / "transformer").is_dir() and not (folder / "unet").exists()
    pipe = load_student(folder)
    assert pipe.unet is None and isinstance(pipe.transformer, DiTTransformer2DModel)
    out = pipe(class_labels=[1, 8], generator=torch.Generator().manual_seed(0), output_type="pt")
    assert_rel(out, expected(gen, dit_teacher, 2, torch.tensor([1, 8])))


# ------------------------------------------------------------------ f. bad input
def test_bad_teacher_folders(tmp_path):
    torch.manual_seed(0)
    bad_net = tmp_path / "net"
    write_teacher(bad_net, tiny_unet(), EDM)
    (bad_net / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet3DConditionModel"}))
    with pytest.raises(ValueError) as e:
        load_teacher(bad_net)
    one_line(e, "UNet3DConditionModel", "UNet2DModel, UNet2DConditionModel, DiTTransformer2DModel")
    good = write_teacher(tmp_path / "good", tiny_unet(), EDM)
    sched_file = good / "scheduler" / "scheduler_config.json"
    for cfg, words in (({"_class_name": "KarrasVeScheduler"}, ("KarrasVeScheduler", "EDMEulerScheduler",
                                                               "FlowMatchEulerDiscreteScheduler", "DDPMScheduler")),
                       ({**EDM, "prediction_type": "sample"}, ("'sample'", "epsilon, v_prediction")),
                       ({**DDPM, "prediction_type": "flow"}, ("'flow'", "epsilon, v_prediction, sample"))):
        sched_file.write_text(json.dumps(cfg))
        with pytest.raises(ValueError) as e:
            load_teacher(good)
        one_line(e, *words)
    sched_file.unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_teacher(good)
    one_line(e, "scheduler/scheduler_config.json")


def test_bad_pipeline_input(edm_teacher, sd_folder, tmp_path):
    from diffusers import LCMScheduler

    from unidistill.modalities.image.io import load_student, save_student
    from unidistill.modalities.image.pipeline import OneStepPipeline

    pipe = load_student(save_student(make_student(edm_teacher, [2.5]), edm_teacher, tmp_path / "student"))
    for labels in ([0, 10], [-1], 10):
        with pytest.raises(ValueError) as e:
            pipe(class_labels=labels)
        one_line(e, "[0, 10)")
    with pytest.raises(ValueError, match="not text-conditioned"):
        pipe(prompt="a")
    with pytest.raises(ValueError, match="num_images"):
        pipe(class_labels=[1, 2], num_images=3)
    with pytest.raises(ValueError) as e:
        pipe(output_type="latent")
    one_line(e, "np, pt, pil")
    with pytest.raises(ValueError) as e:
        OneStepPipeline(scheduler=LCMScheduler(), unet=pipe.unet, student_times=[2.5])
    one_line(e, "LCMScheduler", "EDMEulerScheduler")
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_student(tmp_path / "nowhere")
    teacher = load_teacher(sd_folder, prompts=["a"])
    text = load_student(save_student(make_student(teacher, [2.5]), teacher, tmp_path / "text"))
    with pytest.raises(ValueError, match="give `prompt`"):
        text()
    with pytest.raises(ValueError, match="give `prompt`, not `class_labels`"):
        text(prompt="a", class_labels=[0])
