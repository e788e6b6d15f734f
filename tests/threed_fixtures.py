"""A tiny learned 3D teacher folder (random weights, 8x8 renders) for tests that need a `teacher.path`."""
from __future__ import annotations

from pathlib import Path

import torch

SCHEDULER = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}
PROMPTS = {"a toy": {"red_ball": 0.5, "blue_cube": 0.3, "green_torus": 0.2},
           "a shape": {"yellow_cylinder": 0.5, "blue_cube": 0.5}}


def tiny_threed_teacher(folder: Path, size: int = 8, seed: int = 0) -> Path:
    from diffusers import UNet2DModel

    from unidistill.modalities.shared.denoiser import DiffusersDenoiser, Parameterisation
    from unidistill.modalities.threed.learned import CameraConditioning, LearnedTeacher, save_teacher

    torch.manual_seed(seed)
    net = UNet2DModel(sample_size=size, in_channels=3, out_channels=3, layers_per_block=1,
                      block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                      up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4, norm_num_groups=4,
                      class_embed_type="identity")
    param, process = Parameterisation.from_scheduler(SCHEDULER)
    teacher = LearnedTeacher(DiffusersDenoiser(net, param, process), CameraConditioning(len(PROMPTS), 32))
    info = {"prompts": PROMPTS, "scenes": sorted({s for p in PROMPTS.values() for s in p}), "size": size,
            "n_samples": 8, "background": [1.0, 1.0, 1.0], "bound": 1.0}
    return save_teacher(teacher, SCHEDULER, info, Path(folder))
