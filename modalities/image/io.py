"""What an image run reads and writes: shipped teachers by name, the student as a OneStepPipeline folder
(save_student / load_student), the sampler of `unidistill sample`, and a tiny random teacher for smoke tests."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from unidistill.engine.backend import Drawn, Sampler
from unidistill.engine.config import ConfigError

from .config import ImageConfig

WEIGHTS = Path(__file__).parent / "weights"
SHIPPED = {"digits": WEIGHTS / "digits_edm", "digits_flow": WEIGHTS / "digits_flow"}
DIGITS_SHAPE, DIGITS_CLASSES = (1, 8, 8), 10


def resolve(source: str | Path) -> Path:
    """A shipped teacher's folder by name, or a local diffusers folder."""
    if str(source) in SHIPPED:
        return SHIPPED[str(source)]
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"teacher {str(source)!r} is neither a shipped teacher ({', '.join(SHIPPED)}) "
                                "nor a local diffusers folder")
    return folder


def load_image_teacher(source: str, guidance_scale: float = 1.0, prompts: list[str] | None = None, check: bool = True):
    """The teacher of `config key teacher`, every problem as one ConfigError line."""
    from unidistill.modalities.shared.teacher import load_teacher

    try:
        return load_teacher(resolve(source), guidance_scale=guidance_scale, prompts=prompts, check=check)
    except (ValueError, FileNotFoundError, OSError) as e:
        raise ConfigError(f"config key teacher: {e}") from None


def is_digits(teacher) -> bool:
    """Whether samples are 8x8 digits of 10 classes (the shipped classifier, digits-FID and the digits data apply)."""
    return tuple(teacher.shape) == DIGITS_SHAPE and teacher.denoiser.num_conds == DIGITS_CLASSES


def save_student(generator, teacher, folder: str | Path) -> Path:
    """Write the student (a StudentGenerator of this teacher) as a OneStepPipeline folder, atomically:
    folder.tmp first, then swapped in."""
    import diffusers

    from unidistill.modalities.shared.denoiser import Parameterisation
    from unidistill.modalities.shared.folders import replace_folder
    from unidistill.modalities.shared.teacher import load_text_encoder

    from .pipeline import OneStepPipeline

    folder = Path(folder)
    den = generator.denoiser
    sched_cfg = dict(teacher.scheduler_config)
    Parameterisation.from_scheduler(sched_cfg)
    scheduler = getattr(diffusers, sched_cfg["_class_name"]).from_config(sched_cfg)
    tokenizer = text_encoder = None
    if den.kind == "UNet2DConditionModel":
        tokenizer, text_encoder = load_text_encoder(teacher.folder)
    slot = "transformer" if teacher.network_folder == "transformer" else "unet"
    pipe = OneStepPipeline(scheduler=scheduler, **{slot: den.net}, vae=teacher.vae, text_encoder=text_encoder,
                           tokenizer=tokenizer, student_times=generator.times.tolist(), num_conds=den.num_conds)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    pipe.save_pretrained(tmp)
    return replace_folder(tmp, folder)


def load_student(folder: str | Path):
    """A OneStepPipeline from a folder written by save_student; reads local files only."""
    from .pipeline import OneStepPipeline

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"{folder} is not a student pipeline folder (no model_index.json)")
    return OneStepPipeline.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)


def sampler(cfg: ImageConfig) -> Sampler:
    """The student generator of this config (a copy of the teacher) and decoding to images in [-1, 1]."""
    from unidistill.modalities.shared.student import draw_student, make_student

    teacher = load_image_teacher(cfg.teacher, cfg.guidance_scale, cfg.prompts, check=False)
    try:
        generator = make_student(teacher.denoiser, cfg.student_sigmas)
    except ValueError as e:
        raise ConfigError(f"config key student_sigmas: {e}") from None

    def draw(g, n: int, seed: int) -> Drawn:
        x, c = draw_student(g, n, teacher.shape, teacher.denoiser.num_conds, seed=seed)
        images = teacher.decode(x).numpy()
        what = "classes" if teacher.prompts is None else "prompts (indices into prompts:)"
        return Drawn(images, None if c is None else c.numpy(),
                     f"images (N, C, H, W) with values about [-1, 1]{'' if c is None else f', {what} cycling'}")

    def pictures(values: np.ndarray) -> np.ndarray:  # as the exported OneStepPipeline returns them
        return np.clip(values / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)

    return Sampler(generator, draw, images=pictures)


def write_tiny_teacher(folder: Path) -> Path:
    """A randomly initialised digits-shaped EDM teacher (UNet2DModel, 10 classes + null) for smoke tests."""
    import torch
    from diffusers import UNet2DModel

    if (folder / "unet" / "config.json").is_file():
        return folder
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                          down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                          norm_num_groups=4, num_class_embeds=DIGITS_CLASSES + 1)
    net.save_pretrained(folder / "unet")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    scheduler = {"_class_name": "EDMEulerScheduler", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5,
                 "prediction_type": "epsilon"}
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    return folder
