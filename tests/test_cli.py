"""The command line: every shipped example runs a few steps; bad input fails early with one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from example_commands import command_of

from unidistill.engine.cli import main

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").rglob("*.yaml"))
FAST = ["train.steps=3", "train.batch_size=16", "train.progress=false", "train.checkpoint_every=2",
        "train.log_every=1"]


def fast_overrides(path: Path, tiny_teachers: dict[str, Path] | None = None) -> list[str]:
    data = yaml.safe_load(path.read_text())
    teach = command_of(path) == "teach"
    extra = []
    if data.get("modality") == "image" and teach:  # a teacher config: tiny network
        extra = ["network.block_out_channels=[8, 16]", "network.norm_num_groups=4", "eval.n_samples=20",
                 "eval.steps=2"]
    elif data.get("modality") == "image":  # a student config: the shipped teacher swapped for a tiny one
        extra = [f"teacher={tiny_teachers[data['teacher']]}", "eval.n_samples=20", "real_pool=16",
                 "train.mixed_precision=no"]
    if data.get("modality") == "toy_gmm":
        extra = ["eval.n_samples=200", "generator.hidden=16", "distill.fake.hidden=16"]
        if data["distill"].get("discriminator"):
            extra.append("distill.discriminator.hidden=16")
    if data.get("modality") == "toy_markov":
        extra = ["warm_start_steps=2", "hidden=16"]
    if data.get("modality") == "text" and teach:  # a text teacher or judge: tiny network
        extra = ["length=16", "eval.n_samples=4", "eval.steps=4", "eval.held_out_blocks=8", "eval.judge=none"]
        judge = data.get("kind") == "judge"
        extra += ["network.n_embd=32", "network.n_layer=1", "network.n_head=2"] if judge else \
            ["network.hidden_size=32", "network.num_layers=1", "network.num_heads=2"]
    elif data.get("modality") == "text":
        extra = [f"teacher={tiny_teachers['text']}", f"eval.judge={tiny_teachers['judge']}", "teacher_pool=16",
                 "teacher_pool_steps=4", "eval.n_samples=4", "eval.steps=[4]"]
    if data.get("modality") == "pde" and teach:  # a PDE teacher: tiny data and network
        pde = Path(data["data"]).name.rstrip("0123456789")
        extra = [f"data={tiny_teachers['pde_' + pde].parent / 'data'}", "network.sample_size=16",
                 "network.block_out_channels=[8, 16, 16]", "network.norm_num_groups=4", "eval.n_samples=4",
                 "eval.steps=2"]
    elif data.get("modality") == "pde":
        extra = [f"teacher={tiny_teachers['pde_' + data['teacher']]}", "eval.n_samples=4"]
        if data.get("condition"):  # a one-pass solver: a few training and held-out problems
            extra += ["condition.instances=16", "condition.eval_instances=4"]
    if data.get("modality") == "3d" and teach:  # the 3D teacher: tiny network and renders
        extra = ["network.sample_size=8", "network.block_out_channels=[8, 16, 16]", "network.norm_num_groups=4",
                 "network.attention_head_dim=4", "n_samples=8", "eval.n_samples=2", "eval.steps=2"]
    elif data.get("modality") == "3d":
        path = (data.get("teacher") or {}).get("path")
        size = 16 if path not in (None, "shipped") else 8  # the Stable Diffusion stand-in's VAE takes 16x16
        extra = ["eval.turntable=2", "eval.views=2", f"eval.size={size}", f"render.sizes=[[0.0, {size}]]",
                 "render.n_samples=8", "generator.resolution=8", "generator.per_prompt=2", "teacher.n_samples=8"]
        if path is not None:
            extra.append(f"teacher.path={tiny_teachers['3d_sd' if path != 'shipped' else '3d']}")
    if data.get("modality") == "mar" and teach:  # the MAR teacher: tiny transformer and head
        extra = ["transformer.width=16", "transformer.depth=1", "transformer.decoder_depth=1", "transformer.heads=2",
                 "transformer.buffer=2", "head.width=16", "head.depth=1", "eval.n_samples=10", "eval.iters=2",
                 "eval.steps=2"]
    elif data.get("modality") == "mar":
        extra = [f"teacher.path={tiny_teachers['mar']}", "generator.iters=2", "eval.n_samples=10", "eval.iters=2"]
    return FAST + extra


@pytest.fixture(scope="module")
def tiny_teachers(tmp_path_factory) -> dict[str, Path]:
    """Tiny random stand-ins for the shipped digits teachers (same parameterisations)."""
    from image_fixtures import FLOW, tiny_digits_teacher, tiny_sd_teacher
    from pde_fixtures import tiny_pde_teacher
    from text_fixtures import tiny_judge, tiny_mdlm
    from threed_fixtures import tiny_threed_teacher

    from unidistill.modalities.mar.io import tiny_teacher as tiny_mar_teacher

    root = tmp_path_factory.mktemp("teachers")
    return {"digits": tiny_digits_teacher(root / "edm"), "digits_flow": tiny_digits_teacher(root / "flow", FLOW),
            "/path/to/stable-diffusion-v1-5": tiny_sd_teacher(root / "sd"),
            "text": tiny_mdlm(root / "mdlm"), "judge": tiny_judge(root / "judge"),
            **{f"pde_{p}": tiny_pde_teacher(root / p, p) for p in ("darcy", "poisson", "helmholtz", "burgers")},
            "3d": tiny_threed_teacher(root / "3d"), "3d_sd": tiny_sd_teacher(root / "3d_sd"),
            "mar": tiny_mar_teacher(root / "mar")}


@pytest.mark.parametrize("config", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_runs_and_samples(config, tmp_path, tiny_teachers):
    teach = command_of(config) == "teach"
    args = ["teach" if teach else "distill", str(config), "--out", str(tmp_path)]
    for o in fast_overrides(config, tiny_teachers):
        args += ["--set", o]
    assert main(args) == 0
    modality = yaml.safe_load(config.read_text()).get("modality")
    if teach and modality == "text":  # a text teacher (judge) exports a transformers folder with its tokenizer
        from unidistill.modalities.text.masked_lm import load_masked_lm

        if yaml.safe_load(config.read_text()).get("kind") == "judge":
            from unidistill.modalities.text.evaluate import load_judge

            assert load_judge(str(tmp_path / "judge")).config.n_positions == 17
        else:
            model, tok = load_masked_lm(tmp_path / "teacher")
            assert model.length == 16 and model.mask_id == tok.mask_token_id
        assert list((tmp_path / "samples").glob("*.txt")) or yaml.safe_load(config.read_text()).get("kind") == "judge"
        return
    if teach and modality == "pde":  # a PDE teacher folder: diffusers UNet + scheduler + pde.json
        from unidistill.modalities.pde.io import load_teacher

        assert load_teacher(tmp_path / "teacher").shape[1:] == (16, 16)
        assert list((tmp_path / "samples").glob("*.png"))
        return
    if teach and modality == "3d":  # a 3D teacher folder: diffusers UNet + scheduler + conditioning + threed.json
        from unidistill.modalities.threed.learned import load_teacher as load_3d

        assert load_3d(tmp_path / "teacher")[0].size == 8
        return
    if teach and modality == "mar":  # a MAR folder: mar.json + model.safetensors, and a grid of its samples
        from unidistill.modalities.mar.model import load_mar

        assert load_mar(tmp_path / "teacher")[0].length == 16
        assert list((tmp_path / "samples").glob("*.png"))
        return
    if teach:  # a teacher run exports a diffusers folder that loads as a teacher
        from unidistill.modalities.shared.teacher import load_teacher

        assert load_teacher(tmp_path / "teacher").shape == (1, 8, 8)
        return
    if modality == "text":  # a student exports a transformers folder (and the discriminator for guided sampling)
        from unidistill.modalities.text.io import load_run

        student, tok, disc = load_run(tmp_path)
        assert student.length == 16 and disc is not None
        assert list((tmp_path / "samples").glob("*.txt"))
        out = tmp_path / "s.npy"
        assert main(["sample", str(tmp_path), "--n", "5", "--out", str(out)]) == 0
        assert np.load(out).shape == (5, 16)
        return
    if modality == "pde":  # a student folder loads without the run
        from unidistill.modalities.pde.io import load_student

        gen, spec = load_student(tmp_path)
        assert spec.shape == (2, 16, 16) and gen.n_steps == len(yaml.safe_load(config.read_text())["student_sigmas"])
        if gen.condition is not None:  # a one-pass solver answers problems, it does not sample
            from unidistill.modalities.pde.conditional import solve_with_conditional
            from unidistill.modalities.pde.inverse import make_problem

            x = torch.from_numpy(spec.pde.generate(3, 16, np.random.default_rng(0)))
            answer, passes = solve_with_conditional(gen, spec, make_problem(spec, x, "forward", 0.1))
            assert answer.shape == (3, 2, 16, 16) and passes == 1
            assert main(["sample", str(tmp_path), "--n", "2", "--out", str(tmp_path / "s.npy")]) == 2
            return
    if yaml.safe_load(config.read_text()).get("modality") == "image":  # a student exports a diffusers pipeline
        from unidistill.modalities.image.io import load_student

        pipe = load_student(tmp_path / "student")
        if pipe.text_conditioned:
            assert pipe(prompt="a cat", num_images=2).shape == (2, 16, 16, 3)  # decoded through the VAE
        else:
            assert pipe(num_images=3).shape == (3, 8, 8, 1)
    if modality == "mar":  # a grid and the unmasking order of the student's samples
        assert list((tmp_path / "samples").glob("*_unmasking.png"))
    if modality == "3d":  # the scenes: grids, and a turntable per particle
        assert (tmp_path / "scenes" / "particles.safetensors").is_file()
        assert len(list((tmp_path / "scenes").glob("*_turntable.gif"))) >= 2  # two particles per prompt
    for name in ("config.yaml", "log.csv", "metrics.json"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "samples").glob("*.png"))
    assert json.loads((tmp_path / "metrics.json").read_text())
    out = tmp_path / "s.npy"
    assert main(["sample", str(tmp_path), "--n", "7", "--out", str(out)]) == 0
    assert np.load(out).shape[0] == 7


def run_err(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


RING = str(Path(__file__).parents[1] / "examples" / "toy" / "ring8_sid.yaml")


@pytest.mark.parametrize("override,expected", [
    ("train.stepz=3", "unknown config key train.stepz; allowed: steps"),
    ("train.steps=abc", "train.steps must be an integer, got 'abc'"),
    ("distill.divergence.name=klx", "distill.divergence.name: unknown divergence 'klx'; choose one of: fdiv, fgm, ikl"),
    ("distill.divergence.alpah=1", "distill.divergence.alpah is not an option of 'sid'; allowed: alpha, weighting"),
    ("distill.divergence.name=didi", "'didi' is a policy-gradient estimator for discrete tokens; this modality's "
                                     "samples are continuous: choose one of: fdiv, fgm, ikl, none, sds, sid, sim, uni"),
    ("distill.fake.width=3", "distill.fake.width is not an option of this modality's fake score; "
                             "allowed: hidden, depth"),
    ("distill.real=corpus", "distill.real = 'corpus' is not a source of real samples here; "
                            "choose one of: data, teacher"),
    ("divergence={name: sim}", "unknown config key divergence (did you mean distill.divergence?)"),
    ("process.name=vq", "unknown process 'vq'"),
    ("mixture.ring.weights=[0.5, 0.6]", "config key mixture: weights must have shape (8,)"),
    ("modality=images3d", "unknown modality 'images3d'"),
    ("generatr.hidden=3", "unknown config key generatr; allowed: mixture, process"),
])
def test_bad_config_fails_in_one_line(override, expected, capsys, tmp_path):
    err = run_err(["distill", RING, "--out", str(tmp_path), "--set", override], capsys)
    assert expected in err
    assert not list(tmp_path.glob("checkpoints/*"))


def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-3 as a string; config fields and registry options read it as the number
    (these were refusals in the bad-input catalogue before)."""
    from unidistill.engine.builders import coerce_options
    from unidistill.engine.cli import load_run_config
    from unidistill.engine.divergences import DIVERGENCES

    run = load_run_config(RING, ["train.lr.generator=1e-3", "distill.divergence.alpha=5e-1"])
    assert run.train.lr["generator"] == 1e-3 and isinstance(run.train.lr["generator"], float)
    options = coerce_options(DIVERGENCES.get("sid"), {"alpha": run.cfg.distill.divergence["alpha"]}, "d")
    assert options == {"alpha": 0.5}


@pytest.mark.parametrize("config,override,expected", [
    (RING, "distill.real=bogus", "distill.real = 'bogus' is not a source of real samples here; choose one of: "
                                 "data, teacher"),
    (RING, "distill.fake.width=3", "distill.fake.width is not an option of this modality's fake score; "
                                   "allowed: hidden, depth"),
    (str(Path(__file__).parents[1] / "examples" / "image" / "digits_sim.yaml"), "distill.reward={name: clasifier, "
     "alpha: 0.1}", "distill.reward.name: unknown reward 'clasifier'; choose one of: classifier, contrast"),
    (str(Path(__file__).parents[1] / "examples" / "pde" / "darcy_phys_instruct.yaml"), "distill.real=data",
     "choose one of: none (this modality has no real samples)"),
])
def test_what_a_backend_offers_is_checked_before_torch_loads(config, override, expected, tmp_path):
    """Backend.offers: a typo in the networks' options, the real source or the reward is refused from the
    config alone, before torch (let alone the teacher) is imported."""
    code = ("import sys; from unidistill.engine.cli import main; "
            f"rc = main(['distill', {config!r}, '--out', {str(tmp_path / 'run')!r}, '--set', {override!r}]); "
            "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 2 and expected in res.stderr, res.stderr
    assert res.stdout.strip() == "no torch"


def test_missing_config_file(capsys, tmp_path):
    assert "does not exist" in run_err(["distill", str(tmp_path / "nope.yaml")], capsys)


def test_sample_needs_a_run_directory(capsys, tmp_path):
    err = run_err(["sample", str(tmp_path), "--out", str(tmp_path / "x.npy")], capsys)
    assert "neither a run directory (no config.yaml) nor an exported student" in err


TEXT = str(Path(__file__).parents[1] / "examples" / "text" / "pydoc_didi.yaml")
TEXT_TEACH = str(Path(__file__).parents[1] / "examples" / "text" / "pydoc_teacher.yaml")


@pytest.mark.parametrize("overrides, expected", [
    (["length=40"], "config key length = 40; the teacher reads at most 16 tokens"),
    (["distill.divergence={name: ikl}"], "'ikl' is a continuous divergence; this modality's samples are discrete "
                                         "tokens: choose one of: didi"),
    (["rollout.steps=1"], "distill.coupled_time: true needs a rollout of at least 2 steps (an intermediate time)"),
    (["rollout.tau_range=[0.5, 0.2]"], "rollout.tau_range must be [lo, hi]"),
    (["distill.discriminator.trainable_blocks=7"], "distill.discriminator: trainable_blocks = 7; the teacher has 2"),
    (["distill.real=data"], "distill.real = 'data' is not a source of real samples here; "
                            "choose one of: teacher, corpus"),
    (["teacher=/nonexistent/folder"], "config key teacher: '/nonexistent/folder' is neither 'shipped'"),
    (["eval.judge=JUDGE_WRONG_VOCAB"], "the tokenizer 2048; a judge must be trained with the same tokenizer"),
])
def test_bad_text_config_fails_in_one_line(overrides, expected, capsys, tmp_path, tiny_teachers):
    if "JUDGE_WRONG_VOCAB" in overrides[0]:
        from unidistill.modalities.text.judge import build_judge
        from unidistill.modalities.text.masked_lm import save_masked_lm
        from unidistill.modalities.text.tokenizer import train_tokenizer

        tok = train_tokenizer(["some text for a tiny tokenizer"] * 3, vocab_size=300)
        judge = build_judge({"n_embd": 8, "n_layer": 1, "n_head": 2}, len(tok), 16, tok.eos_token_id)
        overrides = [f"eval.judge={save_masked_lm(judge, tok, tmp_path / 'judge300')}"]
    args = ["distill", TEXT, "--out", str(tmp_path / "run"), "--set", f"teacher={tiny_teachers['text']}",
            "--set", f"eval.judge={tiny_teachers['judge']}"]
    for o in overrides:
        args += ["--set", o]
    assert expected in run_err(args, capsys)


def test_text_teacher_length_over_the_network_limit_fails_in_one_line(capsys, tmp_path):
    err = run_err(["teach", TEXT_TEACH, "--out", str(tmp_path), "--set", "length=32", "--set",
                   "network.max_position_embeddings=16", "--set", "eval.judge=none"], capsys)
    assert "config key length = 32 exceeds network.max_position_embeddings = 16" in err


PDE = str(Path(__file__).parents[1] / "examples" / "pde" / "darcy_phys_instruct.yaml")
PDE_TEACH = str(Path(__file__).parents[1] / "examples" / "pde" / "darcy_teacher.yaml")


@pytest.mark.parametrize("overrides,expected", [
    (["distill.reward.through=coefficient"], "config key distill.reward: guidance through 'coefficient'"),
    (["distill.reward.alpha=-1"], "config key distill.reward.alpha must be a finite number >= 0, got -1"),
    (["distill.reward.name=classifier"], "distill.reward.name: unknown reward 'classifier'; "
                                         "choose one of: residual"),
    (["student_sigmas=[1.0, 5.0]"], "config key student_sigmas: student_sigmas must decrease"),
    (["distill.divergence={name: fdiv}"], "'fdiv' needs a discriminator, which this modality does not build; choose "
                                          "one of: fgm, ikl, none, sds, sid, sim"),
    (["teacher=/no/such/folder"], "config key teacher: teacher '/no/such/folder' is neither a shipped PDE teacher"),
])
def test_bad_pde_config_fails_in_one_line(overrides, expected, capsys, tmp_path, tiny_teachers):
    args = ["distill", PDE, "--out", str(tmp_path), "--set", f"teacher={tiny_teachers['pde_darcy']}"]
    for o in overrides:
        args += ["--set", o]
    assert expected in run_err(args, capsys)


def test_pde_teacher_needs_a_dataset_folder(capsys, tmp_path):
    err = run_err(["teach", PDE_TEACH, "--out", str(tmp_path), "--set", f"data={tmp_path}"], capsys)
    assert "config key data:" in err and "no meta.json" in err
