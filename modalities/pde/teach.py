"""`unidistill teach` for PDEs: an EDM UNet2DModel over normalised joint fields (coefficient and solution
as channels) fitted by denoising score matching on a solver dataset; exports a PDE teacher folder."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unidistill.engine import process as proc
from unidistill.engine.builders import build_named
from unidistill.engine.config import ConfigError
from unidistill.engine.distill import edm_weight
from unidistill.engine.teach import DenoisingObjective
from unidistill.modalities.image.denoiser import DiffusersDenoiser, Parameterisation
from unidistill.modalities.image.teach import export_teacher

from .data import load_dataset
from .teacher import Normaliser, PDETeacher, write_info


@dataclass
class TeachEval:
    n_samples: int = 64  # unconditional samples whose relative PDE residual is logged
    steps: int = 18  # Heun steps of the probability-flow ODE for those samples


@dataclass
class PDETeachConfig:
    data: str  # dataset folder written by `python -m unidistill.modalities.pde.data`
    network: dict[str, Any]  # diffusers UNet2DModel config; in/out_channels = the PDE's channels
    scheduler: dict[str, Any] = field(default_factory=lambda: {
        "_class_name": "EDMEulerScheduler", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 1.0,
        "prediction_type": "epsilon"})  # EDM; fields are normalised to unit std per channel, so sigma_data = 1
    time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "lognormal", "p_mean": -0.6,
                                                                  "p_std": 1.4})
    eval: TeachEval = field(default_factory=TeachEval)


def build_teach(cfg: PDETeachConfig, out_dir: Path) -> DenoisingObjective:
    from diffusers import UNet2DModel

    from .evaluate import sample_teacher, save_samples

    try:
        ds = load_dataset(cfg.data)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"config key data: {e}") from None
    x = torch.from_numpy(ds.train)
    norm = Normaliser(x.mean(dim=(0, 2, 3)).float(), x.std(dim=(0, 2, 3)).float())
    x_model = norm.to_model(x.float())
    try:
        net = UNet2DModel(**cfg.network)
        param, process = Parameterisation.from_scheduler(cfg.scheduler)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key network/scheduler: {e}") from None
    c, size = x.shape[1], x.shape[-1]
    if net.config.in_channels != c or net.config.out_channels != c or net.config.sample_size != size:
        raise ConfigError(f"config key network: in/out_channels and sample_size must be the data's {c} channels "
                          f"and {size} (got {net.config.in_channels}/{net.config.out_channels}, "
                          f"{net.config.sample_size})")
    if param.family != "edm":
        raise ConfigError("config key scheduler: PDE teachers use an EDM scheduler (EDMEulerScheduler)")
    den = DiffusersDenoiser(net, param, process)

    def spec(den_) -> PDETeacher:
        """The network being trained (or its EMA copy) as a PDE teacher."""
        return PDETeacher(den_, ds.pde, norm, {"size": size})

    def data(noise, n):
        i = noise.randint(len(x_model), n).cpu()
        return x_model[i].to(noise.device), None

    def draw(den_, n):
        return sample_teacher(spec(den_), n, cfg.eval.steps, generator=torch.Generator().manual_seed(0))

    def evaluate(den_):
        r = spec(den_).residual(draw(den_, cfg.eval.n_samples).double())
        return {"relative_residual": float(r.mean()), "relative_residual_median": float(r.median())}

    obj = DenoisingObjective(denoiser=den, process=process, data=data,
                             time_sampler=build_named(proc.TIME_SAMPLERS, cfg.time_sampler, "time_sampler"),
                             weight=edm_weight(param.sigma_data), evaluate=evaluate,
                             save_pictures=lambda den_, path: save_samples(spec(den_), draw(den_, 4), path))

    def export(den_, run):
        folder = export_teacher(den_, cfg.scheduler, Path(run) / "teacher")
        write_info(folder, ds.pde, size, norm, ds.meta["residual_floor"])
        return folder

    obj.export = export
    return obj
