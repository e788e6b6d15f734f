"""`unidistill teach` for PDEs: an EDM UNet2DModel over normalised joint fields (coefficient and solution
as channels) fitted by denoising score matching on a solver dataset; exports a PDE teacher folder."""
from __future__ import annotations

from pathlib import Path

import torch

from unidistill.engine import process as proc
from unidistill.engine.builders import build_named, check_options
from unidistill.engine.config import ConfigError
from unidistill.engine.distill import edm_weight
from unidistill.engine.objective import Outputs, sample_path
from unidistill.engine.teach import DenoisingObjective
from unidistill.modalities.shared.denoiser import DiffusersDenoiser, Parameterisation
from unidistill.modalities.shared.sampling import sample_teacher

from .config import PDETeachConfig
from .data import load_dataset
from .evaluate import residual_metrics
from .io import save_teacher
from .plots import plot_samples
from .teacher import Normaliser, PDETeacher


def build_teach(cfg: PDETeachConfig, out_dir: Path) -> DenoisingObjective:
    from diffusers import UNet2DModel

    check_options(UNet2DModel, cfg.network, "network", "diffusers UNet2DModel")
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
        return PDETeacher(den_, ds.pde, norm, {"size": size, "residual_floor": ds.meta["residual_floor"]})

    def data(noise, n):
        i = noise.randint(len(x_model), n).cpu()
        return x_model[i].to(noise.device), None

    def draw(den_, n):
        return sample_teacher(den_, n, cfg.eval.steps, generator=torch.Generator().manual_seed(0), batch=256)

    outputs = Outputs(
        evaluate=lambda den_: residual_metrics(spec(den_), draw(den_, cfg.eval.n_samples)),
        save_samples=lambda den_, run, step: [plot_samples(spec(den_), draw(den_, 4), sample_path(run, step, ".png"))],
        export=lambda den_, run: save_teacher(den_, spec(den_), run / "teacher", cfg.scheduler))
    return DenoisingObjective(denoiser=den, process=process, data=data,
                              time_sampler=build_named(proc.TIME_SAMPLERS, cfg.time_sampler, "time_sampler"),
                              weight=edm_weight(param.sigma_data), outputs=outputs)
