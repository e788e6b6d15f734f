"""PDE teacher and student folders, and the sampler of `unidistill sample`.

A teacher folder: unet/ + scheduler/ (a diffusers UNet2DModel and its EDM scheduler config, C =
len(pde.channels) channels) and pde.json {"pde", "options", "size", "channels", "mean", "std",
"residual_floor"}. A student folder is the same plus student.json with the noise levels of its K steps,
so a user loads it without the run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from unidistill.engine.backend import Drawn, Sampler
from unidistill.engine.config import ConfigError

from .config import PDEConfig
from .teacher import Normaliser, PDETeacher

WEIGHTS = Path(__file__).parent / "weights"
SHIPPED = {p: WEIGHTS / f"{p}_edm" for p in ("darcy", "poisson", "helmholtz", "burgers")}
# distilled students (`load_student("darcy")`, `unidistill sample modalities/pde/weights/darcy_student`)
SHIPPED_STUDENTS = {"darcy": WEIGHTS / "darcy_student", "poisson": WEIGHTS / "poisson_student",
                    "darcy_solver": WEIGHTS / "darcy_solver", "poisson_solver": WEIGHTS / "poisson_solver"}


def write_info(folder: Path, pde, size: int, norm: Normaliser, floor: dict) -> None:
    from .problems import options

    info = {"pde": pde.name, "options": options(pde), "size": size, "channels": list(pde.channels),
            "mean": norm.mean.tolist(), "std": norm.std.tolist(), "residual_floor": floor}
    tmp = folder / "pde.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, folder / "pde.json")


def load_teacher(source: str | Path, concat: int = 0) -> PDETeacher:
    """A shipped teacher by PDE name, or a local folder laid out as above (`concat`: the network also reads that
    many condition channels, as an observation-conditioned student's does)."""
    from diffusers import UNet2DModel

    from unidistill.modalities.shared.denoiser import DiffusersDenoiser
    from unidistill.modalities.shared.folders import read_scheduler

    from .data import build_pde

    folder = SHIPPED.get(str(source), Path(source))
    if not folder.is_dir():
        raise FileNotFoundError(f"teacher {str(source)!r} is neither a shipped PDE teacher ({', '.join(SHIPPED)}) "
                                "nor a folder")
    for need in ("pde.json", "unet", "scheduler/scheduler_config.json"):
        if not (folder / need).exists():
            raise FileNotFoundError(f"teacher folder {folder} has no {need}")
    try:
        info = json.loads((folder / "pde.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"teacher folder {folder}: pde.json is not valid JSON ({e})") from None
    missing = [k for k in ("pde", "size", "mean", "std") if not isinstance(info, dict) or k not in info]
    if missing:
        raise ValueError(f"teacher folder {folder}: pde.json lacks {', '.join(missing)}")
    pde = build_pde(info["pde"], **info.get("options", {}))
    from unidistill.modalities.shared.folders import load_weights

    net = load_weights(UNet2DModel, folder / "unet")
    c, size = len(pde.channels), info["size"]
    if net.config.in_channels != c + concat or net.config.out_channels != c or net.config.sample_size != size:
        raise ValueError(f"teacher {folder}: the network is {net.config.in_channels} -> {net.config.out_channels} "
                         f"channels at {net.config.sample_size}x{net.config.sample_size}, but pde.json says "
                         f"{pde.name} ({c} channels{f' + {concat} condition channels' if concat else ''}) at "
                         f"{size}x{size}")
    _, param, process = read_scheduler(folder)
    den = DiffusersDenoiser(net.eval(), param, process).requires_grad_(False)
    norm = Normaliser(torch.tensor(info["mean"]), torch.tensor(info["std"]))
    return PDETeacher(den, pde, norm, info)


def load_pde_teacher(source: str) -> PDETeacher:
    """The teacher of `config key teacher`, every problem as one ConfigError line."""
    try:
        return load_teacher(source)
    except (ValueError, FileNotFoundError, OSError) as e:
        raise ConfigError(f"config key teacher: {e}") from None


def edm_scheduler(den) -> dict:
    """The EDM scheduler config that reproduces a denoiser's parameterisation."""
    return {"_class_name": "EDMEulerScheduler", "sigma_min": den.process.t_min, "sigma_max": den.process.t_max,
            "sigma_data": den.param.sigma_data, "prediction_type": den.param.prediction}


def save_teacher(den, teacher_like: PDETeacher, folder: Path, scheduler: dict | None = None) -> Path:
    """A teacher folder for a denoiser over teacher_like's PDE, grid and normaliser."""
    from unidistill.modalities.shared.folders import write_network_folder

    folder = write_network_folder(den, scheduler or edm_scheduler(den), Path(folder))
    write_info(folder, teacher_like.pde, teacher_like.info["size"], teacher_like.norm,
               teacher_like.info.get("residual_floor", {}))
    return folder


def save_student(generator, teacher: PDETeacher, sigmas: list[float], folder: str | Path,
                 condition: dict | None = None) -> Path:
    """The teacher layout for the student's network plus student.json (its noise levels, and for an
    observation-conditioned student the `condition` section it was trained with)."""
    den = getattr(generator.denoiser, "den", generator.denoiser)  # an ObservedDenoiser wraps the network
    folder = save_teacher(den, teacher, Path(folder))
    tmp = folder / "student.json.tmp"
    info = {"modality": "pde", "sigmas": list(map(float, sigmas))}
    if condition is not None:
        info["condition"] = condition
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, folder / "student.json")
    return folder


def load_student(source: str | Path):
    """(generator, its PDE description) from a student folder or a run directory holding student/."""
    from unidistill.modalities.shared.student import StudentGenerator, student_times

    folder = SHIPPED_STUDENTS.get(str(source), Path(source))
    if (folder / "student").is_dir():
        folder = folder / "student"
    if not (folder / "student.json").is_file():
        raise FileNotFoundError(f"{source} is not a PDE student (no student.json); distil one with unidistill distill")
    info = json.loads((folder / "student.json").read_text())
    if "condition" in info:  # the network reads 2C condition channels (conditional.py)
        from .conditional import ObservedDenoiser

        channels = json.loads((folder / "pde.json").read_text()).get("channels", [])
        spec = load_teacher(folder, concat=2 * len(channels))
        den = ObservedDenoiser(spec.denoiser, spec)
    else:
        spec = load_teacher(folder)
        den = spec.denoiser
    gen = StudentGenerator(den, student_times(spec.denoiser.process, info["sigmas"])).eval()
    gen.condition = info.get("condition")  # None for an unconditional student
    return gen, spec


def sample_student(generator, teacher: PDETeacher, n: int, seed: int = 0) -> torch.Tensor:
    """n model-space samples (n, C, N, N) from fixed latents (seeded)."""
    from unidistill.modalities.shared.student import draw_student

    return draw_student(generator, n, teacher.shape, seed=seed, batch=256)[0]


def sampler(cfg: PDEConfig) -> Sampler:
    """The student generator of this config and the map to physical fields (n, C, N, N)."""
    from unidistill.modalities.shared.student import make_student

    teacher = load_pde_teacher(cfg.teacher)
    if cfg.condition is not None:
        raise ConfigError("config key condition: this student answers forward and inverse problems from "
                          "observations; call unidistill.modalities.pde.conditional.solve_with_conditional "
                          "(docs/pde.md) instead of unidistill sample")
    try:
        generator = make_student(teacher.denoiser, cfg.student_sigmas)
    except ValueError as e:
        raise ConfigError(f"config key student_sigmas: {e}") from None

    def draw(g, n: int, seed: int) -> Drawn:
        x = teacher.norm.to_physical(sample_student(g, teacher, n, seed).double()).numpy()
        return Drawn(x, about=f"{teacher.pde.name} fields (N, C, H, W) in physical units, channels "
                              f"{', '.join(teacher.pde.channels)}")

    return Sampler(generator, draw)


def exported_sampler(folder: Path) -> Sampler:
    """`unidistill sample` on an exported (or shipped) unconditional student folder."""
    generator, spec = load_student(folder)
    if generator.condition is not None:
        raise ValueError("this student answers forward and inverse problems from observations; call "
                         "unidistill.modalities.pde.conditional.solve_with_conditional (docs/pde.md)")

    def draw(g, n: int, seed: int) -> Drawn:
        x = spec.norm.to_physical(sample_student(g, spec, n, seed).double()).numpy()
        return Drawn(x, about=f"{spec.pde.name} fields (N, C, H, W) in physical units, channels "
                              f"{', '.join(spec.pde.channels)}")

    return Sampler(generator, draw)


def write_tiny_teacher(folder: Path, pde: str = "darcy", size: int = 16, **options) -> Path:
    """A teacher folder with a random tiny UNet and the normaliser of a tiny solver dataset, for smoke tests."""
    from diffusers import UNet2DModel

    from unidistill.modalities.shared.denoiser import DiffusersDenoiser, Parameterisation

    from .data import build_pde, load_dataset, make_dataset

    folder = Path(folder)
    if (folder / "pde.json").is_file():
        return folder
    data = make_dataset(build_pde(pde, **options), folder.with_name(folder.name + "_data"), size=size, n_train=24,
                        n_test=8, seed=0, progress=False)
    ds = load_dataset(data)
    x = torch.from_numpy(ds.train)
    norm = Normaliser(x.mean(dim=(0, 2, 3)).float(), x.std(dim=(0, 2, 3)).float())
    scheduler = {"_class_name": "EDMEulerScheduler", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 1.0,
                 "prediction_type": "epsilon"}
    param, process = Parameterisation.from_scheduler(scheduler)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        c = x.shape[1]
        net = UNet2DModel(sample_size=size, in_channels=c, out_channels=c, block_out_channels=[8, 16, 16],
                          layers_per_block=1, down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                          up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"], norm_num_groups=4)
    info = {"size": size, "residual_floor": ds.meta["residual_floor"]}
    like = PDETeacher(DiffusersDenoiser(net, param, process), ds.pde, norm, info)
    return save_teacher(like.denoiser, like, folder, scheduler)
