"""The text backend end to end on tiny models: DiDi-Instruct's discriminator keeps its copied teacher blocks
frozen through training, the student starts equal to the teacher, and the guided sampler counts its passes."""
from __future__ import annotations

import json

import pytest
import torch
from text_fixtures import tiny_judge, tiny_mdlm

from unidistill.engine.config import TrainConfig, build
from unidistill.engine.masked_sampling import Guidance
from unidistill.engine.trainer import Trainer
from unidistill.modalities.text.config import TextConfig
from unidistill.modalities.text.distill import build_distill
from unidistill.modalities.text.masked_lm import load_masked_lm
from unidistill.modalities.text.sampler import sample_ids

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    return tiny_mdlm(root / "teacher"), tiny_judge(root / "judge")


def test_didi_trains_the_head_and_top_block_only(folders, tmp_path) -> None:
    teacher_dir, judge_dir = folders
    cfg = build(TextConfig, {"teacher": str(teacher_dir), "teacher_pool": 16, "teacher_pool_steps": 4,
                             "eval": {"judge": str(judge_dir), "n_samples": 4, "steps": [4]}}, "config")
    obj = build_distill(cfg, tmp_path)
    student, disc, teacher = obj.modules["generator"], obj.modules["discriminator"], load_masked_lm(teacher_dir)[0]
    z = torch.full((2, 16), teacher.mask_id)
    assert torch.equal(student(z, torch.ones(2)), teacher(z, torch.ones(2)))  # initialised from the teacher
    before = {k: v.clone() for k, v in disc.state_dict().items()}
    train = build(TrainConfig, {"steps": 2, "batch_size": 8, "lr": {"generator": 1e-3, "discriminator": 1e-2},
                                "progress": False, "checkpoint_every": 100}, "train")
    Trainer(obj, train, tmp_path).fit()
    after = disc.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("head.") for k in changed) and any(k.startswith("body.backbone.blocks.1.") for k in changed)
    frozen_parts = ("body.backbone.blocks.0.", "body.backbone.embed", "body.backbone.pos")
    frozen = [k for k in before if k.startswith(frozen_parts)]
    assert frozen and not changed & set(frozen)
    assert not torch.equal(student.backbone.blocks[0].attn.qkv.weight, teacher.backbone.blocks[0].attn.qkv.weight)


def test_guided_sampler_reports_discriminator_passes_apart_from_nfe(folders, tmp_path) -> None:
    teacher_dir, judge_dir = folders
    cfg = build(TextConfig, {"teacher": str(teacher_dir), "eval": {"judge": "none"}}, "config")
    obj = build_distill(cfg, tmp_path)
    g = Guidance(scale=(1.0, 2.0), tilt_fraction=0.5, candidates=3)
    teacher = load_masked_lm(teacher_dir)[0]
    x, stats = sample_ids(teacher, 6, 8, guidance=g, discriminator=obj.modules["discriminator"])
    assert x.shape == (6, 16) and (x != teacher.mask_id).all()
    assert stats.nfe == 8 and stats.extra == {"disc_forward": 4 + 4 * 3, "disc_backward": 4}
    with pytest.raises(ValueError, match="needs the run's discriminator"):
        sample_ids(teacher, 2, 4, guidance=g)


def test_the_guidance_option_reaches_evaluation_and_sample(folders, tmp_path) -> None:
    """`guidance:` on: evaluation samples with the reward-guided sampler (and counts the discriminator's
    passes), and `unidistill sample` loads the run's discriminator for it."""
    import numpy as np
    import yaml

    from unidistill.engine.cli import main

    teacher_dir, judge_dir = folders
    cfg = {"modality": "text", "teacher": str(teacher_dir), "teacher_pool": 8, "teacher_pool_steps": 4,
           "guidance": {"scale": [1.0, 1.0], "tilt_fraction": 0.5, "candidates": 2},
           "eval": {"judge": str(judge_dir), "n_samples": 4, "steps": [4]},
           "train": {"steps": 2, "batch_size": 4, "progress": False, "checkpoint_every": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["distill", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["disc_forward_4"] == 2 + 2 * 2 and metrics["disc_backward_4"] == 2  # tilt 2 of 4, re-rank 2
    assert main(["sample", str(tmp_path / "run"), "--n", "3", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (3, 16)
