"""Load a teacher from a local diffusers folder.

Expected layout (the one `save_pretrained` of a diffusers pipeline writes):
  scheduler/scheduler_config.json            required: fixes the parameterisation (see denoiser.py)
  unet/ or transformer/                      UNet2DModel | UNet2DConditionModel | DiTTransformer2DModel
  text_encoder/ + tokenizer/                 required by UNet2DConditionModel (transformers classes)
  vae/                                       optional AutoencoderKL: distillation runs in its latent space
Nothing is downloaded: a user with real weights on disk points `teacher:` at the folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .denoiser import NETWORKS, DiffusersDenoiser
from .folders import find_network, load_weights, read_scheduler


@dataclass
class Teacher:
    """A frozen teacher denoiser plus what maps its space to pictures and its conditions to inputs."""

    denoiser: DiffusersDenoiser
    folder: Path
    scheduler_config: dict
    network_folder: str  # "unet" or "transformer"
    vae: nn.Module | None = None
    prompts: list[str] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.denoiser.size
        return (self.denoiser.channels, *((s, s) if isinstance(s, int) else s))

    @torch.no_grad()
    def decode(self, x: Tensor) -> Tensor:
        """Model-space samples -> images in [-1, 1] (through the VAE for latent teachers)."""
        return x if self.vae is None else decode_latents(self.vae, x)


def decode_latents(vae: nn.Module, x: Tensor) -> Tensor:
    """Latents (scaled by the VAE's scaling_factor, shifted by its shift_factor if any) -> images in [-1, 1]."""
    cfg = vae.config
    z = x / cfg.scaling_factor + (getattr(cfg, "shift_factor", None) or 0.0)
    return vae.decode(z.to(next(vae.parameters()).dtype)).sample.float()


def load_teacher(folder: str | Path, *, guidance_scale: float = 1.0, prompts: list[str] | None = None,
                 check: bool = True) -> Teacher:
    """A Teacher from a diffusers folder; checks everything before training starts."""
    import diffusers

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"teacher folder {folder} does not exist")
    sched, param, process = read_scheduler(folder)
    sub, cls_name = find_network(folder)
    if cls_name not in NETWORKS:
        raise ValueError(f"teacher network class {cls_name!r} in {folder / sub} is not supported; "
                         f"supported: {', '.join(NETWORKS)}")
    net = load_weights(getattr(diffusers, cls_name), folder / sub).float()
    num_conds, table = 0, None
    if cls_name == "UNet2DConditionModel":
        if not prompts:
            raise ValueError(f"teacher {folder} is text-conditioned (UNet2DConditionModel): give `prompts`")
        table = encode_prompts(folder, prompts)
        num_conds = len(prompts)
    elif prompts:
        raise ValueError(f"teacher {folder} ({cls_name}) is not text-conditioned; remove `prompts`")
    elif cls_name == "UNet2DModel" and net.config.num_class_embeds:
        if net.config.class_embed_type not in (None, "timestep"):
            raise ValueError(f"UNet2DModel class_embed_type {net.config.class_embed_type!r} is not supported")
        num_conds = net.config.num_class_embeds - 1  # convention: the last class embedding is the null class
    elif cls_name == "DiTTransformer2DModel":
        num_conds = net.config.num_embeds_ada_norm  # DiT's label embedding holds one extra (null) row
    vae = None
    if (folder / "vae" / "config.json").is_file():
        vae = load_weights(diffusers.AutoencoderKL, folder / "vae").float().requires_grad_(False).eval()
        if vae.config.latent_channels != net.config.in_channels:
            raise ValueError(f"teacher {folder}: the VAE has {vae.config.latent_channels} latent channels but the "
                             f"{cls_name} takes {net.config.in_channels}")
    den = DiffusersDenoiser(net, param, process, num_conds=num_conds, cond_table=table,
                            guidance_scale=guidance_scale).requires_grad_(False).eval()
    teacher = Teacher(den, folder, sched, sub, vae, list(prompts) if prompts else None)
    if check:
        check_teacher(teacher)
    return teacher


def encode_prompts(folder: Path, prompts: list[str]) -> Tensor:
    """Text-encoder hidden states (len(prompts) + 1, L, D) of a teacher folder's text encoder (see embed_prompts)."""
    return embed_prompts(*load_text_encoder(folder), prompts)


def load_text_encoder(folder: Path):
    """(tokenizer, text encoder) from a teacher folder's tokenizer/ and text_encoder/ (transformers Auto classes)."""
    from transformers import AutoModel, AutoTokenizer

    for sub in ("tokenizer", "text_encoder"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"teacher folder {folder} is text-conditioned but has no {sub}/")
    tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
    return tok, load_weights(AutoModel, folder / "text_encoder").float().eval()


@torch.no_grad()
def embed_prompts(tokenizer, text_encoder: nn.Module, prompts: list[str]) -> Tensor:
    """Text-encoder hidden states (len(prompts) + 1, L, D); the last row is the empty prompt (CFG)."""
    ids = tokenizer(list(prompts) + [""], padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device)).last_hidden_state.float()


@torch.no_grad()
def check_teacher(teacher: Teacher) -> None:
    """One call at a middle noise level on random inputs; a non-finite output fails here, before training."""
    den = teacher.denoiser
    n = 2
    t = torch.full((n,), 0.5 * (den.process.t_min + den.process.t_max)) if den.param.family != "edm" \
        else torch.full((n,), 1.0)
    x = torch.randn(n, *teacher.shape)
    c = torch.zeros(n, dtype=torch.long) if den.num_conds else None
    d = den(x, t, c)
    if d.shape != x.shape:
        raise ValueError(f"teacher output shape {tuple(d.shape)} does not match its input {tuple(x.shape)}")
    if not torch.isfinite(d).all():
        raise ValueError(f"teacher {teacher.folder} returns non-finite values at t = {t[0].item():.4g}")
