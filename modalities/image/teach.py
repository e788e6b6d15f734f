"""`unidistill teach` for images: fit a class-conditional diffusers UNet2DModel under a diffusers
scheduler's parameterisation (EDM or rectified flow) on digits or an .npz of images, then export
the EMA network as a diffusers folder (unet/ + scheduler/) that distillation configs point at."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unidistill.engine import process as proc
from unidistill.engine.builders import build_named, check_options
from unidistill.engine.config import ConfigError
from unidistill.engine.distill import edm_weight
from unidistill.engine.objective import Outputs, sample_path
from unidistill.engine.teach import DenoisingObjective, prediction_weight
from unidistill.modalities.shared.denoiser import DiffusersDenoiser, Parameterisation
from unidistill.modalities.shared.digits import load_digits
from unidistill.modalities.shared.folders import write_network_folder

from .config import TeachConfig


def load_images(data: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training images (N, C, H, W) in [-1, 1] and labels (N,) or None."""
    if data == "digits":
        return load_digits("train")
    path = Path(data)
    if not path.is_file():
        raise ConfigError(f"config key data: {data!r} is neither 'digits' nor an existing .npz file")
    try:
        with np.load(path) as f:  # allow_pickle stays False: object arrays are refused
            if "x" not in f:
                raise ConfigError(f"config key data: {path} has no array 'x' (images (N, C, H, W) in [-1, 1])")
            x = torch.from_numpy(np.asarray(f["x"], dtype=np.float32))
            y = torch.from_numpy(np.asarray(f["y"], dtype=np.int64)) if "y" in f else None
    except ConfigError:
        raise
    except (OSError, EOFError, ValueError) as e:
        raise ConfigError(f"config key data: {path} is not a readable .npz of numbers "
                          f"({str(e).splitlines()[0][:100]})") from None
    if x.ndim != 4 or not torch.isfinite(x).all() or x.abs().max() > 1 + 1e-6:
        raise ConfigError(f"config key data: {path} 'x' must be finite (N, C, H, W) in [-1, 1], got {tuple(x.shape)}")
    return x, y


def build_teacher_network(cfg: TeachConfig, images: torch.Tensor, labels: torch.Tensor | None):
    """A fresh UNet2DModel wrapped as a DiffusersDenoiser; checks shapes and classes against the data."""
    from diffusers import UNet2DModel

    check_options(UNet2DModel, cfg.network, "network", "diffusers UNet2DModel")
    try:
        net = UNet2DModel(**cfg.network)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key network: {e}") from None
    c = net.config
    if c.in_channels != images.shape[1] or c.out_channels != images.shape[1]:
        raise ConfigError(f"config key network: in/out_channels must equal the data's {images.shape[1]} channels")
    if c.sample_size != images.shape[-1] or images.shape[-1] != images.shape[-2]:
        raise ConfigError(f"config key network.sample_size: {c.sample_size} != the data's {tuple(images.shape[-2:])}")
    num_conds = 0
    if labels is not None and c.num_class_embeds:
        num_conds = c.num_class_embeds - 1
        if int(labels.max()) >= num_conds or int(labels.min()) < 0:
            raise ConfigError(f"config key network.num_class_embeds: labels span 0..{int(labels.max())}, "
                              f"so it must be at least {int(labels.max()) + 2} (the last embedding is the null class)")
    try:
        param, process = Parameterisation.from_scheduler(cfg.scheduler)
    except ValueError as e:
        raise ConfigError(f"config key scheduler: {e}") from None
    return DiffusersDenoiser(net, param, process, num_conds=num_conds)


def build_teach(cfg: TeachConfig, out_dir: Path) -> DenoisingObjective:
    from unidistill.modalities.shared.pictures import save_grid
    from unidistill.modalities.shared.sampling import sample_teacher

    images, labels = load_images(cfg.data)
    den = build_teacher_network(cfg, images, labels)
    conditional = den.num_conds > 0
    param, process = den.param, den.process
    weight = edm_weight(param.sigma_data) if param.family == "edm" else prediction_weight(
        process, {"flow": "velocity", "epsilon": "eps", "v_prediction": "v", "sample": "x0"}[param.prediction])
    t_sampler = build_named(proc.TIME_SAMPLERS, cfg.time_sampler, "time_sampler")

    def data(noise, n):
        i = noise.randint(len(images), n).cpu()
        dev = noise.device
        return images[i].to(dev), (labels[i].to(dev) if conditional else None)

    def draw(den_, n, seed=0):
        cond = torch.arange(n) % den.num_conds if conditional else None
        with torch.no_grad():
            return sample_teacher(den_, n, cfg.eval.steps, cond, guidance_scale=cfg.eval.guidance_scale,
                                  generator=torch.Generator().manual_seed(seed)), cond

    def evaluate(den_):
        from unidistill.modalities.shared.digits_eval import shipped_evaluator

        if cfg.data != "digits":
            return {}
        x, cond = draw(den_, cfg.eval.n_samples)
        return shipped_evaluator()(x, cond)

    outputs = Outputs(
        evaluate=evaluate,
        save_samples=lambda den_, run, step: [save_grid(draw(den_, 100)[0], sample_path(run, step, ".png"), nrow=10)],
        export=lambda den_, run: write_network_folder(den_, cfg.scheduler, run / "teacher"))  # a diffusers folder
    return DenoisingObjective(
        denoiser=den, process=process, data=data, time_sampler=t_sampler, weight=weight,
        label_dropout=cfg.label_dropout if conditional else 0.0, null_cond=den.null_cond if conditional else None,
        outputs=outputs)
