"""Tiny PDE datasets and random-weight PDE teachers (16 x 16) for fast tests."""
from __future__ import annotations

from pathlib import Path

import torch

SIZE = 16
SCHEDULER = {"_class_name": "EDMEulerScheduler", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 1.0,
             "prediction_type": "epsilon"}


def tiny_pde_data(root: Path, pde: str = "darcy", **opts) -> Path:
    from unidistill.modalities.pde.data import build_pde, make_dataset

    return make_dataset(build_pde(pde, **opts), root, size=SIZE, n_train=24, n_test=8, seed=0, progress=False)


def tiny_network(channels: int):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=SIZE, in_channels=channels, out_channels=channels, block_out_channels=[8, 16, 16],
                       layers_per_block=1, down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                       up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"], norm_num_groups=4)


def tiny_pde_teacher(root: Path, pde: str = "darcy", **opts) -> Path:
    """A teacher folder (random UNet, normaliser from a tiny solver dataset) for `pde`."""
    from unidistill.modalities.pde.data import load_dataset
    from unidistill.modalities.pde.io import save_teacher
    from unidistill.modalities.pde.teacher import Normaliser, PDETeacher
    from unidistill.modalities.shared.denoiser import DiffusersDenoiser, Parameterisation

    ds = load_dataset(tiny_pde_data(root / "data", pde, **opts))
    x = torch.from_numpy(ds.train)
    norm = Normaliser(x.mean(dim=(0, 2, 3)).float(), x.std(dim=(0, 2, 3)).float())
    param, process = Parameterisation.from_scheduler(SCHEDULER)
    den = DiffusersDenoiser(tiny_network(x.shape[1]), param, process)
    like = PDETeacher(den, ds.pde, norm, {"size": SIZE, "residual_floor": ds.meta["residual_floor"]})
    return save_teacher(den, like, root / "teacher", SCHEDULER)
