"""A diffusers network as the engine's denoiser D(x_t, t, c) ~ E[x0 | x_t, c].

The scheduler config fixes how the network's input and output relate to x_t, and therefore
which engine process the teacher lives on:

- EDM (EDMEulerScheduler, EDMDPMSolverMultistepScheduler): engine process `ve` with t = sigma; the
  network sees c_in x and c_noise = ln(sigma) / 4; prediction epsilon or v_prediction through EDM's
  c_skip / c_out (Karras et al. 2022, Table 1).
- DDPM family (DDPM, DDIM, Euler, DPM-Solver, PNDM, ...): `vp_discrete` with t = the timestep index,
  fed as is; prediction epsilon, v_prediction or sample.
- FlowMatchEulerDiscreteScheduler: `rectified_flow` with t = sigma, fed as sigma x num_train_timesteps;
  the network predicts the velocity u = eps - x0.

Conditions are integer indices everywhere in the engine: a class label, or the index of a prompt
whose text-encoder embedding sits in `cond_table`. Index `null_cond` is the unconditional input
(the null class, or the empty prompt) used by classifier-free guidance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unidistill.engine.process import DiscreteVPProcess, GaussianProcess, RectifiedFlowProcess, VEProcess, bcast

EDM_SCHEDULERS = ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler",)
VP_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
                 "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "PNDMScheduler",
                 "LMSDiscreteScheduler", "HeunDiscreteScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler")
SCHEDULERS = EDM_SCHEDULERS + FLOW_SCHEDULERS + VP_SCHEDULERS
NETWORKS = ("UNet2DModel", "UNet2DConditionModel", "DiTTransformer2DModel")


@dataclass(frozen=True)
class Parameterisation:
    """How a network's (input, time, output) map onto the engine's (x_t, t, D)."""

    family: str  # edm | vp | flow
    prediction: str  # epsilon | v_prediction | sample | flow
    sigma_data: float = 0.5  # EDM only
    time_scale: float = 1.0  # flow: network timestep = t * time_scale

    @classmethod
    def from_scheduler(cls, config: dict) -> tuple[Parameterisation, GaussianProcess]:
        """Read a diffusers scheduler config (dict with `_class_name`)."""
        name = config.get("_class_name", "?")
        pred = config.get("prediction_type", "epsilon")
        if name in EDM_SCHEDULERS:
            _allowed("prediction_type", pred, ("epsilon", "v_prediction"), name)
            proc = VEProcess(config.get("sigma_min", 0.002), config.get("sigma_max", 80.0))
            return cls("edm", pred, sigma_data=float(config.get("sigma_data", 0.5))), proc
        if name in FLOW_SCHEDULERS:
            n = config.get("num_train_timesteps", 1000)
            return cls("flow", "flow", time_scale=float(n)), RectifiedFlowProcess(t_min=1e-3, t_max=1 - 1e-3)
        if name in VP_SCHEDULERS:
            _allowed("prediction_type", pred, ("epsilon", "v_prediction", "sample"), name)
            if config.get("trained_betas") is not None:
                raise ValueError(f"{name}: trained_betas is not supported; give beta_start/beta_end/beta_schedule")
            if config.get("rescale_betas_zero_snr"):
                raise ValueError(f"{name}: rescale_betas_zero_snr is not supported (sigma/alpha is infinite at T)")
            proc = DiscreteVPProcess(config.get("num_train_timesteps", 1000), config.get("beta_start", 0.0001),
                                     config.get("beta_end", 0.02), config.get("beta_schedule", "linear"))
            return cls("vp", pred), proc
        raise ValueError(f"unsupported scheduler {name!r}; supported: {', '.join(SCHEDULERS)}")


def _allowed(key: str, value, allowed, where: str) -> None:
    if value not in allowed:
        raise ValueError(f"{where}: unsupported {key} {value!r}; supported: {', '.join(allowed)}")


class DiffusersDenoiser(nn.Module):
    """D(x_t, t, c) for a UNet2DModel, UNet2DConditionModel or DiTTransformer2DModel.

    x_t (B, C, H, W) on `process`; t (B,); c (B,) long (class or prompt index) or None.
    `guidance_scale` w != 1 applies classifier-free guidance D_u + w (D_c - D_u) in one batched call.
    `concat` (B, C', H, W) are extra input channels placed after the (preconditioned) x_t, unscaled: a network
    with C + C' input channels conditioned on a field (observations, a low-resolution image), as inpainting
    and super-resolution UNets are; `self.channels` stays C, the channels of x_t and of the output.
    """

    def __init__(self, net: nn.Module, param: Parameterisation, process: GaussianProcess, *,
                 num_conds: int = 0, cond_table: Tensor | None = None, guidance_scale: float = 1.0):
        super().__init__()
        kind = type(net).__name__
        if kind not in NETWORKS:
            raise ValueError(f"unsupported network class {kind!r}; supported: {', '.join(NETWORKS)}")
        self.net, self.param, self.process, self.kind = net, param, process, kind
        for m in net.modules():  # DiT drops class labels at random in train mode; students and fake scores train
            if type(m).__name__ == "LabelEmbedding":
                m.dropout_prob = 0.0
        self.num_conds, self.guidance_scale = num_conds, float(guidance_scale)
        # prompt embeddings (num_conds + 1, L, D): row num_conds is the empty prompt
        self.register_buffer("cond_table", cond_table, persistent=False)
        cfg = net.config
        # a UNet with more input than output channels takes the difference as concatenated condition channels;
        # a DiT's extra output channels are its learned variance
        self.channels = cfg.in_channels if kind == "DiTTransformer2DModel" else min(cfg.in_channels, cfg.out_channels)
        self.concat_channels = cfg.in_channels - self.channels
        self.size = cfg.sample_size if isinstance(cfg.sample_size, int) else tuple(cfg.sample_size)

    @property
    def null_cond(self) -> int:
        return self.num_conds

    def forward(self, x_t: Tensor, t: Tensor, c: Tensor | None = None, guidance_scale: float | None = None,
                concat: Tensor | None = None) -> Tensor:
        if (concat is None) != (self.concat_channels == 0) or (
                concat is not None and concat.shape[1] != self.concat_channels):
            got = "none" if concat is None else concat.shape[1]
            raise ValueError(f"this network takes {self.concat_channels} concatenated condition channels, got {got}")
        w = self.guidance_scale if guidance_scale is None else guidance_scale
        if w == 1.0 or c is None or self.num_conds == 0:
            return self._denoise(x_t, t, c, concat)
        null = torch.full_like(c, self.null_cond)
        d = self._denoise(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([c, null]),
                          None if concat is None else torch.cat([concat, concat]))
        d_c, d_u = d.chunk(2)
        return d_u + w * (d_c - d_u)

    def _denoise(self, x_t: Tensor, t: Tensor, c: Tensor | None, concat: Tensor | None = None) -> Tensor:
        p, proc = self.param, self.process
        t = t.to(x_t.dtype)
        if p.family == "edm":
            sigma = bcast(t, x_t)
            s2 = sigma**2 + p.sigma_data**2
            out = self._net(x_t / s2.sqrt(), 0.25 * torch.log(t), c, concat)
            c_skip, c_out = p.sigma_data**2 / s2, sigma * p.sigma_data / s2.sqrt()
            return c_skip * x_t + (c_out if p.prediction == "epsilon" else -c_out) * out
        if p.family == "flow":
            return proc.to_denoiser(self._net(x_t, t * p.time_scale, c, concat), x_t, t, "velocity")
        kind = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}[p.prediction]
        return proc.to_denoiser(self._net(x_t, t, c, concat), x_t, t, kind)

    def _net(self, x: Tensor, timestep: Tensor, c: Tensor | None, concat: Tensor | None = None) -> Tensor:
        if concat is not None:
            x = torch.cat([x, concat.to(x.dtype)], dim=1)
        if self.kind == "UNet2DConditionModel":
            if c is None or self.cond_table is None:
                raise ValueError("a UNet2DConditionModel teacher needs prompts (their text-encoder embeddings)")
            return self.net(x, timestep, encoder_hidden_states=self.cond_table[c].to(x.dtype)).sample
        if self.kind == "DiTTransformer2DModel":
            out = self.net(x, timestep=timestep, class_labels=c).sample
            return out[:, : self.channels] if out.shape[1] == 2 * self.channels else out  # drop learned variance
        return self.net(x, timestep, class_labels=c).sample


def time_of_sigma(process: GaussianProcess, sigma_hat: float) -> float:
    """Native time t with sigma(t) / alpha(t) = sigma_hat (EDM's noise level of x_t / alpha)."""
    from unidistill.engine.sampling import t_of_sigma_hat

    if not math.isfinite(sigma_hat) or sigma_hat <= 0:
        raise ValueError(f"a noise level sigma must be a positive number, got {sigma_hat}")
    return float(t_of_sigma_hat(process, torch.tensor(sigma_hat, dtype=torch.float64)))


def feature_layer(den: DiffusersDenoiser) -> tuple[nn.Module, int]:
    """The layer an adversarial head reads (engine.adversarial) and its width: a UNet's middle block (the
    bottleneck, as DMD2 and Uni-Instruct use), a DiT's middle transformer block."""
    net = den.net
    if den.kind == "DiTTransformer2DModel":
        blocks = net.transformer_blocks
        return blocks[len(blocks) // 2], net.inner_dim
    return net.mid_block, net.config.block_out_channels[-1]
