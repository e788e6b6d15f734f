"""The MAR model (transformer + diffusion head on the cosine VP process), the per-token condition every critic
sees (`Cond`), the learned teacher's guided denoiser, and teacher folders (mar.json + model.safetensors)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from unidistill.engine.process import VPCosineProcess, bcast

from .nets import DiffusionHead, MARTransformer
from .schedule import check_iters, guidance_scales, step_of_token

FORMAT = "unidistill-mar-1"


def cosine_process() -> VPCosineProcess:
    """MAR's head schedule: alpha_bar = cos^2(pi/2 (t + 0.008)/1.008) normalised, t = (DDPM index + 1) / 1000."""
    return VPCosineProcess(s=0.008, t_min=1e-3, t_max=0.999)


class MAR(nn.Module):
    """A MAR model over images cut into `patch` x `patch` tokens: transformer, head and their sizes."""

    def __init__(self, image: int = 8, channels: int = 1, patch: int = 2, classes: int = 10,
                 transformer: dict | None = None, head: dict | None = None):
        super().__init__()
        from .tokens import check_patch

        check_patch(image, patch)
        self.image, self.channels, self.patch, self.classes = image, channels, patch, classes
        self.length, self.token_dim = (image // patch) ** 2, channels * patch * patch
        self.sizes = {"transformer": dict(transformer or {}), "head": dict(head or {})}
        self.transformer = MARTransformer(self.token_dim, self.length, classes, **self.sizes["transformer"])
        self.head = DiffusionHead(self.token_dim, self.transformer.width, **self.sizes["head"])
        self.process = cosine_process()

    def info(self) -> dict:
        return {"format": FORMAT, "image": self.image, "channels": self.channels, "patch": self.patch,
                "classes": self.classes, **self.sizes}


def denoise_eps(process, eps: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """D = (x_t - sigma eps) / alpha on per-element times t (B, L) or per-row t (N,)."""
    return (x_t - bcast(process.sigma(t), x_t) * eps) / bcast(process.alpha(t), x_t)


@dataclass
class Cond:
    """What the teacher, the fake score and a reward see of each token of a sample (B, L, d): the transformer's
    output given the token's context (the tokens revealed before its iteration) and class, the same with the null
    class (None without guidance), the guidance scale of its iteration, and the context itself (the sample without
    its graph, which tokens each token saw, the class), from which the exact teacher reads its weights."""

    z: Tensor  # (B, L, W)
    z_null: Tensor | None  # (B, L, W)
    scale: Tensor  # (B, L)
    tokens: Tensor  # (B, L, d)
    visible: Tensor  # (B, L, L) bool: token j was visible when token i was sampled
    labels: Tensor  # (B,)


@torch.no_grad()
def contexts(transformer: MARTransformer, tokens: Tensor, order: Tensor, labels: Tensor, iters: int,
             guidance: float = 1.0, schedule: str = "linear") -> Cond:
    """The Cond of a finished sample: one transformer pass per iteration (two under guidance, batched), each
    token taking the output of the pass of its own iteration."""
    b, length, _ = tokens.shape
    check_iters(iters, length)
    steps = step_of_token(order, iters)
    guided = guidance != 1.0
    z = z_null = None
    for k in range(iters):
        visible = steps < k
        if guided:
            both = transformer(tokens.repeat(2, 1, 1), visible.repeat(2, 1), labels.repeat(2),
                               drop=torch.arange(2 * b, device=tokens.device) >= b)
            zk, znk = both[:b], both[b:]
        else:
            zk, znk = transformer(tokens, visible, labels, drop=torch.zeros_like(labels, dtype=torch.bool)), None
        here = (steps == k)[..., None]
        z = zk if z is None else torch.where(here, zk, z)
        if guided:
            z_null = znk if z_null is None else torch.where(here, znk, z_null)
    scale = guidance_scales(guidance, iters, length, schedule).to(tokens.device)[steps]
    return Cond(z, z_null, scale, tokens.detach(), steps[:, None, :] < steps[:, :, None], labels)


class HeadTeacher(nn.Module):
    """The learned teacher as the engine's denoiser D(x_t (B, L, d), t (B, L), cond): the head's eps on each
    token's z, guided eps = eps_null + w (eps - eps_null) (MAR's `forward_with_cfg`), then D by Tweedie."""

    def __init__(self, head: DiffusionHead, process):
        super().__init__()
        self.head, self.process = head, process

    def eps(self, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor:
        shape = x_t.shape
        return self.head(x_t.reshape(-1, shape[-1]), t.reshape(-1).to(x_t.dtype), z.reshape(-1, z.shape[-1])
                         ).reshape(shape)

    def forward(self, x_t: Tensor, t: Tensor, cond: Cond) -> Tensor:
        eps = self.eps(x_t, t, cond.z)
        if cond.z_null is not None:
            eps_null = self.eps(x_t, t, cond.z_null)
            eps = eps_null + cond.scale[..., None] * (eps - eps_null)
        return denoise_eps(self.process, eps, x_t, t)


class Teacher(nn.Module):
    """The frozen teacher the engine queries: D(x_t, t, cond) from `denoiser` (the learned head or the exact kernel
    mixture), and `condition(x0, latent)`, each token's Cond read by the teacher's transformer from the sample's
    own contexts (the order and K of the latent), with guidance `scale` on `schedule`."""

    def __init__(self, transformer: MARTransformer, denoiser: nn.Module, guidance: float = 1.0,
                 schedule: str = "linear"):
        super().__init__()
        guidance_scales(guidance, 1, 1, schedule)  # the schedule's name, checked now
        self.transformer, self.denoiser, self.guidance, self.schedule = transformer, denoiser, guidance, schedule

    def condition(self, x0: Tensor, latent) -> Cond:
        return contexts(self.transformer, x0, latent.order, latent.labels, latent.iters, self.guidance,
                        self.schedule)

    def forward(self, x_t: Tensor, t: Tensor, cond: Cond) -> Tensor:
        return self.denoiser(x_t, t, cond)


class FakeHead(HeadTeacher):
    """The online fake score of MARVAL: a trainable copy of the teacher's head on each token's conditional z (the
    student's tokens depend on the context, not on guidance, so the fake sees no null half)."""

    def forward(self, x_t: Tensor, t: Tensor, cond: Cond) -> Tensor:
        return denoise_eps(self.process, self.eps(x_t, t, cond.z), x_t, t)


def save_mar(model: MAR, folder: Path, extra: dict | None = None) -> Path:
    """folder/model.safetensors and folder/mar.json, each written to a temporary name then renamed."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors.tmp"))
    os.replace(folder / "model.safetensors.tmp", folder / "model.safetensors")
    (folder / "mar.json.tmp").write_text(json.dumps({**model.info(), **(extra or {})}, indent=2))
    os.replace(folder / "mar.json.tmp", folder / "mar.json")
    return folder


SHIPPED = Path(__file__).parent / "weights" / "digits_mar"  # trained by examples/mar/teacher.yaml


def load_mar(folder: str | Path) -> tuple[MAR, dict]:
    """(model in eval mode, mar.json) of a MAR folder ("shipped" for the one in the package); anything else is
    named in one line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = SHIPPED if str(folder) == "shipped" else Path(folder)
    for need in ("mar.json", "model.safetensors"):
        if not (folder / need).is_file():
            raise FileNotFoundError(f"{folder} is not a MAR folder (no {need}); train one with "
                                    "unidistill teach examples/mar/teacher.yaml")
    info = json.loads((folder / "mar.json").read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{folder}/mar.json is not a {FORMAT} file (format {info.get('format')!r})")
    model = MAR(info["image"], info["channels"], info["patch"], info["classes"], info["transformer"], info["head"])
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    except (SafetensorError, RuntimeError) as e:
        raise ValueError(f"{folder}/model.safetensors does not hold this MAR's weights: "
                         f"{str(e).splitlines()[0][:120]}") from None
    return model.eval(), info
