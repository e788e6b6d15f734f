"""The 3D backend end to end: runs through the command line, learned and Stable-Diffusion-shaped teachers, fakes
that start as the teacher, reruns that are bit-identical, and one-line errors for bad input before training."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml
from image_fixtures import tiny_sd_teacher

from unidistill.engine.cli import main
from unidistill.engine.process import PROCESSES

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"teacher": {"prompts": {"a toy": {"red_ball": 0.6, "blue_cube": 0.4}}, "n_samples": 8},
        "generator": {"per_prompt": 2, "resolution": 8}, "render": {"sizes": [[0.0, 8]], "n_samples": 8},
        "eval": {"views": 2, "elevations": [15.0], "size": 8, "turntable": 2},
        "train": {"steps": 2, "batch_size": 4, "lr": {"generator": 0.01}, "threads": 1, "progress": False,
                  "checkpoint_every": 1, "eval_every": 0}}


def write(folder: Path, cfg: dict, name: str = "c.yaml") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(yaml.safe_dump({"modality": "3d", **cfg}))
    return str(folder / name)


def one_line_error(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    """A learned 3D teacher trained two steps by `unidistill teach` on 8x8 renders."""
    root = tmp_path_factory.mktemp("teach3d")
    net = {"sample_size": 8, "in_channels": 3, "out_channels": 3, "layers_per_block": 1,
           "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
           "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "attention_head_dim": 4, "norm_num_groups": 4,
           "class_embed_type": "identity"}
    cfg = {"prompts": TINY["teacher"]["prompts"], "network": net, "n_samples": 8,
           "eval": {"n_samples": 2, "steps": 2}, "train": {**TINY["train"], "lr": {"generator": 1e-3}}}
    assert main(["teach", write(root, cfg), "--out", str(root / "run")]) == 0
    return root / "run" / "teacher"


def test_exact_run_writes_turntables_meshes_and_reruns_bit_identically(tmp_path):
    cfg = write(tmp_path, TINY)
    digests = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        assert main(["distill", cfg, "--out", str(out)]) == 0
        scenes = out / "scenes"
        assert (scenes / "a_toy_00_turntable.gif").is_file() and (scenes / "a_toy_01_strip.png").is_file()
        digests.append(hashlib.sha256((scenes / "particles.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert main(["sample", str(tmp_path / "run0"), "--n", "3", "--out", str(tmp_path / "s.npy")]) == 0


def test_learned_teacher_folder_distils_with_every_fake(teacher_folder, tmp_path):
    for k, fake in enumerate([{"exact": True}, {"exact": False}, {"exact": False, "lora": 2}]):
        cfg = {**TINY, "teacher": {"path": str(teacher_folder)}, "distill": {"divergence": {"name": "ikl"},
                                                                             "fake": fake}}
        assert main(["distill", write(tmp_path, cfg), "--out", str(tmp_path / f"r{k}")]) == 0


def test_learned_fakes_start_as_the_teachers_conditional_denoiser(teacher_folder):
    """ResidualFake (zero-initialised output) and LoRAFake (peft, B = 0) equal the unguided teacher at step 0;
    a random residual output layer makes the first differ (the mutation it catches)."""
    from unidistill.modalities.threed.cameras import orbit
    from unidistill.modalities.threed.learned import load_teacher
    from unidistill.modalities.threed.nets import LoRAFake, ResidualFake
    from unidistill.modalities.threed.views import View

    teacher, _ = load_teacher(teacher_folder, guidance=3.0)
    view = View(torch.tensor([0, 0, 0]), orbit(3), 8)
    x_t, t = torch.randn(3, 3, 8, 8), torch.tensor([100.0, 500.0, 900.0])
    base = teacher(x_t, t, view, guidance=1.0)
    assert not torch.allclose(base, teacher(x_t, t, view))  # guidance 3 differs: the comparison can fail
    residual = ResidualFake(teacher, teacher.process, prompts=1, hidden=8).eval()
    lora = LoRAFake(teacher, rank=2).eval()
    torch.testing.assert_close(residual(x_t, t, view), base)
    torch.testing.assert_close(lora(x_t, t, view), base)
    assert any("lora_" in n for n, p in lora.named_parameters() if p.requires_grad)
    assert not any(p.requires_grad for n, p in lora.copy.denoiser.net.named_parameters() if "lora_" not in n)
    torch.nn.init.normal_(residual.out.weight)
    assert not torch.allclose(residual(x_t, t, view), base)


def test_stable_diffusion_shaped_teacher_encodes_renders_and_prompts_by_view(tmp_path):
    """A text teacher with a VAE: the generator's output is the VAE latent of the render with a gradient to the
    voxel grids, and view-dependent prompts pick the sector's text."""
    from unidistill.modalities.threed.cameras import from_angles
    from unidistill.modalities.threed.diffusers_teacher import TextTeacher
    from unidistill.modalities.threed.generators import Particles
    from unidistill.modalities.threed.views import View

    folder = tiny_sd_teacher(tmp_path / "sd")
    teacher = TextTeacher(folder, ["a ball", "a cube"], 7.5, "uncond_first", view_prompts=True)
    assert teacher.size == 16 and teacher.denoiser.cond_table.shape[0] == 2 * 4 + 1
    cams = from_angles(torch.tensor([0.0, 90.0, 180.0, -90.0]), 10.0, 1.7, 50.0)
    view = View(torch.tensor([0, 0, 1, 1]), cams, 16)
    assert teacher.index(view).tolist() == [0, 1, 6, 7]
    g = Particles(2, per_prompt=2, resolution=6, n_samples=8).encode_with(teacher.encode)
    g.grids.colour.data.normal_()
    x0 = g(torch.tensor([0, 1, 2, 3]), view)
    assert x0.shape == (4, 4, 8, 8)
    x0.square().sum().backward()
    assert g.grids.colour.grad.abs().sum() > 0
    cfg = {**TINY, "teacher": {"path": str(folder), "prompts": {"a ball": {}, "a cube": {}}, "guidance": 7.5,
                               "view_prompts": True},
           "render": {"sizes": [[0.0, 16]], "n_samples": 8}}
    assert main(["distill", write(tmp_path, cfg), "--out", str(tmp_path / "run")]) == 0


@pytest.mark.parametrize("override,expected", [
    ("cameras.distance=[0.8,1.0]", "cameras.distance"),
    ("cameras.object_radius=0.9", "cameras.distance"),
    ("teacher.prompts={'a toy': {red_bal: 1.0}}", "unknown scene 'red_bal'; choose one of: red_ball"),
    ("teacher.prompts={'a toy': {red_ball: 0}}", "config key teacher.prompts.a toy: needs scenes with weights > 0"),
    ("render.sizes=[[0.5,8],[0.1,16]]", "config key render.sizes"),
    ("render.sizes=[[0.0,20000]]", "GiB"),
    ("render.background=[1,1]", "render.background must be 3 numbers"),
    ("distill.fake.lora=2", "lora needs a learned teacher"),
    ("teacher.convention=text", "teacher.convention"),
    ("distill.divergence.name=didi", "policy-gradient estimator"),
])
def test_bad_input_fails_in_one_line_before_training(override, expected, tmp_path, capsys):
    cfg = write(tmp_path, {**TINY, "distill": {"divergence": {"name": "ikl"}, "fake": {"exact": False}}})
    err = one_line_error(["distill", cfg, "--out", str(tmp_path / "run"), "--set", override], capsys)
    assert expected in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_teacher_folder_mismatches_fail_in_one_line(teacher_folder, tmp_path, capsys):
    base = {**TINY, "teacher": {"path": str(teacher_folder)}}
    cfg = write(tmp_path, {**base, "render": {"sizes": [[0.0, 16]], "n_samples": 8}})
    assert "takes 8x8 renders; sizes [16] do not match" in one_line_error(["distill", cfg, "--out",
                                                                             str(tmp_path / "a")], capsys)
    cfg = write(tmp_path, {**base, "teacher": {"path": str(teacher_folder), "prompts": {"a cat": {"head": 1}}}})
    assert "knows the prompts 'a toy'" in one_line_error(["distill", cfg, "--out", str(tmp_path / "b")], capsys)
    cfg = write(tmp_path, {**base, "teacher": {"path": str(tmp_path / "nowhere")}})
    assert "config key teacher.path" in one_line_error(["distill", cfg, "--out", str(tmp_path / "c")], capsys)


def test_the_default_process_is_stable_diffusions_schedule():
    from unidistill.modalities.threed.config import ThreeDConfig

    p = PROCESSES.get("vp_discrete")(**{k: v for k, v in ThreeDConfig().process.items() if k != "name"})
    abar = p.alpha(torch.tensor([0.0, 999.0])) ** 2
    torch.testing.assert_close(abar, torch.tensor([1 - 0.00085, 0.0047]), atol=2e-4, rtol=0)


def test_groups_progressive_sizes_regularisers_and_the_amortised_generator_run(tmp_path):
    """Per-group learning rates by parameter name, a render size that grows with progress, the opacity
    regularisers, a learned background, and the amortised generator with a learned fake, through the CLI."""
    cfg = {**TINY, "render": {"sizes": [[0.0, 8], [0.5, 12]], "n_samples": 8},
           "generator": {"per_prompt": 2, "resolution": 8, "learn_background": True},
           "regularisers": {"sparsity": 1.0, "opacity_entropy": 0.1},
           "train": {**TINY["train"], "steps": 4, "log_every": 1,
                     "lr": {"generator": 0.01, "generator.grids.colour": 0.05, "generator.background": 0.001}}}
    out = tmp_path / "run"
    assert main(["distill", write(tmp_path, cfg), "--out", str(out)]) == 0
    assert {"sparsity", "opacity_entropy"} <= set((out / "log.csv").read_text().splitlines()[0].split(","))
    meta = json.loads(next((out / "checkpoints").glob("step_*/meta.json")).read_text())
    groups = meta["optim"]["generator"]["groups"]
    assert groups["grids.colour"]["lr"] == 0.05 and groups["background"]["lr"] == 0.001 and groups[""]["lr"] == 0.01
    amortised = {**TINY, "generator": {"kind": "amortised", "per_prompt": 2, "resolution": 8, "hidden": 16},
                 "distill": {"divergence": {"name": "sim"}, "fake": {"exact": False, "hidden": 8}}}
    assert main(["distill", write(tmp_path, amortised), "--out", str(tmp_path / "am")]) == 0
    assert (tmp_path / "am" / "scenes" / "a_toy_01_turntable.gif").is_file()


def test_progressive_resolution_reaches_the_generator():
    from unidistill.engine.objective import Progress
    from unidistill.modalities.threed.render import resolution_at

    sizes = [(0.0, 8), (0.5, 12)]
    assert [resolution_at(Progress(s, 10).fraction, sizes) for s in (0, 4, 5, 10)] == [8, 8, 12, 12]


def test_init_std_makes_particles_start_apart():
    from unidistill.modalities.threed.generators import Particles

    torch.manual_seed(0)
    same, apart = Particles(1, 2, resolution=4), Particles(1, 2, resolution=4, init_std=1.0)
    assert torch.equal(same.grids.colour[0], same.grids.colour[1])
    assert not torch.equal(apart.grids.colour[0], apart.grids.colour[1])
    assert not torch.equal(apart.grids.density[0], apart.grids.density[1])
