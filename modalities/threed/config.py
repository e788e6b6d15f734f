"""Config of the 3D modality (score distillation of scenes through a renderer)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from unidistill.engine.config import bounded
from unidistill.engine.recipe import ContinuousRecipe


def _prompts() -> dict[str, dict[str, float]]:
    return {"a toy": {"red_ball": 0.5, "blue_cube": 0.3, "green_torus": 0.2},
            "a shape": {"yellow_cylinder": 0.5, "blue_cube": 0.5}}


@dataclass
class TeacherConfig:
    # prompt -> {scene: weight}: the exact teacher's mixture over renders of those scenes (scenes.SCENES)
    prompts: dict[str, dict[str, float]] = field(default_factory=_prompts)
    s0: float = bounded(0.1, lo=0, lo_open=True)  # std of each mixture component around its render ([-1, 1] space)
    guidance: float = bounded(1.0, lo=0, hi=200)  # classifier-free guidance scale (in `convention`)
    convention: Literal["uncond_first", "text_first"] = "uncond_first"  # D_u + w (D_c - D_u) | D_c + s (D_c - D_u)
    janus_front: float | None = bounded(None, lo=0, hi=1)  # Janus case: weight of the front render from any camera
    view_prompts: bool = False  # view-dependent prompting (front / left / back / right by azimuth)
    n_samples: int = bounded(64, lo=2)  # samples per ray of the ground-truth renders
    # a learned teacher folder (`unidistill teach`), or "shipped" for the one in the package; its prompts, scenes,
    # schedule and image size replace the keys above (the exact teacher stays the reference of the metrics)
    path: str | None = None


@dataclass
class CameraConfig:  # threestudio's dreamfusion defaults
    azimuth: list[float] = field(default_factory=lambda: [-180.0, 180.0])  # degrees, 0 = front (+x)
    elevation: list[float] = field(default_factory=lambda: [-10.0, 45.0])  # degrees
    distance: list[float] = field(default_factory=lambda: [1.5, 2.0])
    fovy: list[float] = field(default_factory=lambda: [40.0, 70.0])  # degrees
    stratified: bool = True  # azimuths spread over the batch, one per equal stratum
    object_radius: float = bounded(0.5, lo=0, lo_open=True)  # must stay in view from every camera


@dataclass
class GeneratorConfig:
    kind: Literal["particles", "amortised"] = "particles"  # N scenes per prompt | G(z, prompt) -> scene
    per_prompt: int = bounded(8, lo=1)  # particles (scenes) per prompt; amortised: fixed latents for the metrics
    resolution: int = bounded(32, lo=2)  # voxel grid nodes per axis
    bound: float = bounded(1.0, lo=0, lo_open=True)  # the scene box is [-bound, bound]^3
    blob: float = bounded(10.0, lo=0)  # Magic3D's initial density bias strength (0: none)
    blob_radius: float = bounded(0.5, lo=0, lo_open=True)
    learn_background: bool = False  # a learned backdrop colour per particle (group `generator.background`)
    init_std: float = bounded(0.0, lo=0)  # particles: std of the random raw density and colour at the start
    latent_dim: int = bounded(16, lo=1)  # amortised: size of z
    hidden: int = bounded(256, lo=1)  # amortised: MLP width
    coarse: int = bounded(8, lo=2)  # amortised: the MLP's grid, upsampled trilinearly to `resolution`


@dataclass
class RenderConfig:
    # progressive resolution: [[fraction of training, size], ...] (threestudio: 64 then 512 after 5k of 25k steps)
    sizes: list[list[float]] = field(default_factory=lambda: [[0.0, 32]])
    n_samples: int = bounded(64, lo=2)  # stratified samples per ray (midpoints: renders are deterministic)
    background: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # RGB in [0, 1]


@dataclass
class RegConfig:
    sparsity: float = bounded(0.0, lo=0)  # weight of mean sqrt(opacity^2 + 0.01) (threestudio's lambda_sparsity)
    opacity_entropy: float = bounded(0.0, lo=0)  # weight of BCE(opacity, opacity) (lambda_opaque)


@dataclass
class EvalConfig:
    views: int = bounded(8, lo=1)  # held-out azimuths per elevation for the metrics
    elevations: list[float] = field(default_factory=lambda: [5.0, 30.0])
    size: int = bounded(32, lo=4)  # render size of the metrics
    turntable: int = bounded(24, lo=1)  # frames of each turntable GIF


def _recipe() -> ContinuousRecipe:
    return ContinuousRecipe(divergence={"name": "sds"}, time_sampler={"name": "uniform", "t_min": 20, "t_max": 980},
                            aux_time_sampler={"name": "uniform", "t_min": 0, "t_max": 999})


@dataclass
class ThreeDConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # the teacher's process; Stable Diffusion's schedule by default (t = the DDPM timestep index)
    process: dict[str, Any] = field(default_factory=lambda: {
        "name": "vp_discrete", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"})
    cameras: CameraConfig = field(default_factory=CameraConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    regularisers: RegConfig = field(default_factory=RegConfig)
    # the engine's recipe. divergence: sds | ikl (VSD) | sim (Dive3D) | sid | fgm | fdiv | uni; fake options
    # {exact: the diffused mixture over the particles' renders, or a learned residual over the teacher (hidden,
    # camera_dropout)}; discriminator {exact}: the exact density ratio; real: teacher (exact mixture samples)
    distill: ContinuousRecipe = field(default_factory=_recipe)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _network() -> dict[str, Any]:
    return {"sample_size": 32, "in_channels": 3, "out_channels": 3, "layers_per_block": 1,
            "block_out_channels": [32, 64, 64], "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], "attention_head_dim": 8,
            "norm_num_groups": 8, "class_embed_type": "identity"}


@dataclass
class TeachEval:
    n_samples: int = bounded(64, lo=2)  # teacher samples (random prompts and cameras) for the metrics
    steps: int = bounded(18, lo=1)  # Heun steps of the probability-flow ODE for those samples


@dataclass
class ThreeDTeachConfig:
    prompts: dict[str, dict[str, float]] = field(default_factory=_prompts)  # as teacher.prompts of a distill run
    network: dict[str, Any] = field(default_factory=_network)  # diffusers UNet2DModel; class_embed_type identity
    # a diffusers scheduler config: Stable Diffusion's schedule and eps prediction by default
    scheduler: dict[str, Any] = field(default_factory=lambda: {
        "_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "prediction_type": "epsilon"})
    time_sampler: dict[str, Any] = field(default_factory=lambda: {"name": "uniform"})
    prompt_dropout: float = bounded(0.1, lo=0, hi=1, hi_open=True)  # rate of null-prompt inputs, for CFG
    cameras: CameraConfig = field(default_factory=CameraConfig)
    n_samples: int = bounded(64, lo=2)  # samples per ray of the training renders
    background: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    bound: float = bounded(1.0, lo=0, lo_open=True)
    eval: TeachEval = field(default_factory=TeachEval)
