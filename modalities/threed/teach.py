"""`unidistill teach` for 3D: a camera- and prompt-conditioned UNet2DModel fitted by denoising score matching to
renders of the ground-truth scenes (each prompt's scenes drawn by their weights, cameras from the distill ranges,
the prompt dropped to the null prompt at prompt_dropout for classifier-free guidance); exports a 3D teacher folder.
Its metrics: PSNR of its samples to the nearest ground-truth render from the same camera, and the share of samples
per scene against the prompt's weights."""
from __future__ import annotations

from pathlib import Path

import torch

from unidistill.engine import process as proc
from unidistill.engine.builders import build_named, check_options
from unidistill.engine.config import ConfigError
from unidistill.engine.objective import Outputs, sample_path
from unidistill.engine.sampling import sample_ode
from unidistill.engine.teach import DenoisingObjective, prediction_weight

from ..shared.denoiser import DiffusersDenoiser, Parameterisation
from .cameras import CameraRanges, check_ranges
from .config import ThreeDTeachConfig
from .learned import CameraConditioning, LearnedTeacher, save_teacher
from .render import render
from .scenes import prompt_weights, scene, stacked_field

PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}  # diffusers' names -> prediction_weight's


class GroundTruth:
    """The prompts' scenes and weights, and renders of them: what the teacher learns and is measured against."""

    def __init__(self, prompts: dict[str, dict[str, float]], n_samples: int, background, bound: float):
        try:
            self.names, self.weights = prompt_weights(prompts, "prompts")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.fields = [scene(s).field() for s in self.names]
        self.n_samples, self.bound = n_samples, bound
        self.background = torch.tensor(background, dtype=torch.float32)

    @torch.no_grad()
    def render(self, index, cameras, size: int):
        """Scene index[b] from cameras[b]: (B, 3, size, size) in [-1, 1]."""
        out = render(stacked_field(self.fields, index), cameras, size, size, n_samples=self.n_samples,
                     background=self.background, bound=self.bound)
        return 2 * out.rgb - 1


def build_teach(cfg: ThreeDTeachConfig, out_dir: Path) -> DenoisingObjective:
    from diffusers import UNet2DModel

    from .distill import draw_views

    check_options(UNet2DModel, cfg.network, "network", "diffusers UNet2DModel")
    if cfg.network.get("class_embed_type") != "identity":
        raise ConfigError("config key network.class_embed_type must be 'identity' (the camera and prompt enter as "
                          "the class embedding)")
    truth = GroundTruth(cfg.prompts, cfg.n_samples, cfg.background, cfg.bound)
    c = cfg.cameras
    ranges = CameraRanges(*(tuple(v) for v in (c.azimuth, c.elevation, c.distance, c.fovy)))
    try:
        check_ranges(ranges, c.object_radius)
        net = UNet2DModel(**cfg.network)
        param, process = Parameterisation.from_scheduler(cfg.scheduler)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key network/scheduler/cameras: {e}") from None
    size, prompts = net.config.sample_size, len(cfg.prompts)
    if net.config.in_channels != 3 or net.config.out_channels != 3 or not isinstance(size, int):
        raise ConfigError("config key network: in/out_channels must be 3 (RGB renders) and sample_size one number")
    teacher = LearnedTeacher(DiffusersDenoiser(net, param, process),
                             CameraConditioning(prompts, net.config.block_out_channels[0] * 4))

    def data(noise, n):
        prompt = noise.randint(prompts, n)
        view = draw_views(noise, n, prompt, ranges, False, size)
        u = noise.rand(n)
        cdf = truth.weights.cumsum(1)[prompt.cpu()]
        k = (cdf < u.cpu()[:, None]).sum(1).clamp_max(len(truth.names) - 1)
        x0 = truth.render(k, view.cameras, size).to(noise.device)
        drop = noise.rand(n) < cfg.prompt_dropout
        view.prompt = torch.where(drop, torch.full_like(prompt, prompts), prompt)
        return x0, view

    def metrics(t_):
        return teacher_metrics(t_, truth, ranges, size, cfg.eval.n_samples, cfg.eval.steps)

    def save_samples(t_, run, step):
        from .outputs import save_strip

        x, _ = draw_samples(t_, ranges, size, 16, cfg.eval.steps)
        frames = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [save_strip(frames, sample_path(run, step, ".png"), columns=8)]

    info = {"prompts": cfg.prompts, "scenes": truth.names, "size": size, "n_samples": cfg.n_samples,
            "background": list(cfg.background), "bound": cfg.bound}
    outputs = Outputs(evaluate=metrics, save_samples=save_samples,
                      export=lambda t_, run: save_teacher(t_, cfg.scheduler, info, run / "teacher"))
    return DenoisingObjective(denoiser=teacher, process=process, data=data,
                              time_sampler=build_named(proc.TIME_SAMPLERS, cfg.time_sampler, "time_sampler"),
                              weight=prediction_weight(process, PREDICTIONS[param.prediction]),
                              outputs=outputs)


@torch.no_grad()
def draw_samples(teacher, ranges: CameraRanges, size: int, n: int, steps: int, seed: int = 0):
    """n teacher samples (probability-flow ODE, Heun) for random prompts and cameras: (x0, view)."""
    from unidistill.engine.noise import Noise

    from .distill import draw_views

    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(teacher.conditioning.prompts, (n,), generator=gen)
    view = draw_views(Noise(seed), n, prompt, ranges, False, size)
    x = sample_ode(lambda x_t, t: teacher(x_t, t, view), teacher.process, steps, n, (3, size, size), generator=gen)
    return x, view


@torch.no_grad()
def teacher_metrics(teacher, truth: GroundTruth, ranges: CameraRanges, size: int, n: int, steps: int,
                    times=(100, 300, 600, 900)) -> dict[str, float]:
    """Samples: PSNR to the nearest ground-truth render of the prompt from the same camera, the largest gap between
    a scene's share and its weight. Denoising: PSNR of D(x_t, t) against the render x_t was made from, at `times`
    (a teacher can denoise well, which is what distillation queries, and still sample poorly)."""
    x, view = draw_samples(teacher, ranges, size, n, steps)
    gt = torch.stack([truth.render(torch.full((len(view),), k), view.cameras, size)
                      for k in range(len(truth.names))], 1)  # (N, K, 3, H, W)
    mse = ((x[:, None] - gt) / 2).pow(2).flatten(2).mean(2)  # (N, K), pictures in [0, 1]
    allowed = truth.weights[view.prompt] > 0
    mse = torch.where(allowed, mse, torch.inf)
    best = mse.argmin(1)
    out = {"psnr_to_nearest": float((-10 * torch.log10(mse.min(1).values.clamp_min(1e-10))).mean())}
    errs = []
    for p in range(len(truth.weights)):
        rows = view.prompt == p
        if rows.any():
            share = torch.bincount(best[rows], minlength=len(truth.names)).float() / rows.sum()
            errs.append(float((share - truth.weights[p]).abs().max()))
    out["weight_error"] = max(errs)
    x0 = gt[torch.arange(len(view)), best]
    gen = torch.Generator().manual_seed(1)
    for tv in times:
        t = torch.full((len(view),), float(tv))
        eps = torch.randn(x0.shape, generator=gen)
        d = teacher(teacher.process.add_noise(x0, t, eps), t, view)
        out[f"denoise_psnr_t{tv}"] = float(-10 * torch.log10(((d - x0) / 2).pow(2).mean().clamp_min(1e-10)))
    return out
