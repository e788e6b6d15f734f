"""The PDE backend: train EDM teachers over joint fields (`unidistill teach`) and distil them into
Phys-Instruct few-step generators (`unidistill distill`)."""
from __future__ import annotations

from pathlib import Path

from unidistill.engine.backend import Backend, Sampler
from unidistill.engine.recipe import Offers

from .config import PDEConfig, PDETeachConfig


class PDEBackend(Backend):
    Config = PDEConfig
    TeachConfig = PDETeachConfig

    def offers(self, cfg: PDEConfig) -> Offers:
        return Offers(fake=(), real=(), rewards=("residual",))

    def build(self, cfg: PDEConfig, run_dir: Path):
        from .distill import build_distill

        return build_distill(cfg, run_dir)

    def teach(self, cfg: PDETeachConfig, run_dir: Path):
        from .teach import build_teach

        return build_teach(cfg, run_dir)

    def sampler(self, cfg: PDEConfig, run_dir: Path) -> Sampler:
        from .io import sampler

        return sampler(cfg)

    def exported_sampler(self, folder: Path) -> Sampler:
        from .io import exported_sampler

        return exported_sampler(folder)

    def smoke_config(self, workdir: Path) -> dict:
        from .io import write_tiny_teacher

        return {"teacher": str(write_tiny_teacher(Path(workdir) / "tiny_darcy_teacher")), "eval": {"n_samples": 4}}
