"""A distilled image student as a diffusers pipeline (written and read by io.save_student / io.load_student).

Folder layout (what `DiffusionPipeline.save_pretrained` writes):
  model_index.json   OneStepPipeline, its components, `student_times` (native times t_k) and `num_conds`
  unet/ or transformer/   the student network; the teacher's folder name is kept (DiT teachers -> transformer/)
  scheduler/         the teacher's scheduler config: it only fixes the parameterisation (see shared/denoiser.py)
  vae/, text_encoder/, tokenizer/   the teacher's, when it has them

`OneStepPipeline.from_pretrained(folder)` (or `io.load_student`) loads it; `DiffusionPipeline.from_pretrained`
cannot, since OneStepPipeline is not a diffusers class. Calling the pipeline runs exactly StudentGenerator.
"""
from __future__ import annotations

import numpy as np
import torch
from diffusers import DiffusionPipeline, ModelMixin, SchedulerMixin
from torch import Tensor

from unidistill.modalities.shared.denoiser import NETWORKS, DiffusersDenoiser, Parameterisation
from unidistill.modalities.shared.student import StudentGenerator
from unidistill.modalities.shared.teacher import decode_latents, embed_prompts

OUTPUT_TYPES = ("np", "pt", "pil")


def scheduler_config(scheduler) -> dict:
    """A scheduler object's config as the dict Parameterisation.from_scheduler reads."""
    return {**dict(scheduler.config), "_class_name": type(scheduler).__name__}


class OneStepPipeline(DiffusionPipeline):
    """K-step student sampling: x = D(sigma_1 z_1, t_1, c), x = D(alpha_k x + sigma_k z_k, t_k, c), decoded to [0, 1].

    The network sits in `unet` or, for a DiT teacher, in `transformer` (so its folder keeps the teacher's name);
    exactly one of them is set, and `network` returns it.
    """

    _optional_components = ["unet", "transformer", "vae", "text_encoder", "tokenizer"]

    def __init__(self, scheduler: SchedulerMixin, unet: ModelMixin | None = None,
                 transformer: ModelMixin | None = None, vae: ModelMixin | None = None, text_encoder=None,
                 tokenizer=None, student_times: list[float] | None = None, num_conds: int = 0):
        super().__init__()
        if (unet is None) == (transformer is None):
            raise ValueError("OneStepPipeline needs exactly one network, in `unet` or in `transformer`")
        kind = type(unet if unet is not None else transformer).__name__
        if kind not in NETWORKS:
            raise ValueError(f"unsupported network class {kind!r}; supported: {', '.join(NETWORKS)}")
        Parameterisation.from_scheduler(scheduler_config(scheduler))  # an unsupported scheduler fails here
        if not student_times:
            raise ValueError("OneStepPipeline needs student_times (the student's decreasing native times t_k)")
        if kind == "UNet2DConditionModel" and (text_encoder is None or tokenizer is None):
            raise ValueError("a UNet2DConditionModel student needs a text_encoder and a tokenizer")
        self.register_modules(scheduler=scheduler, unet=unet, transformer=transformer, vae=vae,
                              text_encoder=text_encoder, tokenizer=tokenizer)
        self.register_to_config(student_times=[float(t) for t in student_times], num_conds=int(num_conds))

    @property
    def network(self) -> ModelMixin:
        return self.unet if self.unet is not None else self.transformer

    @property
    def text_conditioned(self) -> bool:
        return type(self.network).__name__ == "UNet2DConditionModel"

    @torch.no_grad()
    def __call__(self, class_labels=None, prompt: str | list[str] | None = None, num_images: int | None = None,
                 generator: torch.Generator | None = None, output_type: str = "np"):
        """Images in [0, 1]: numpy (N, H, W, C) for "np", torch (N, C, H, W) for "pt", a list of PIL for "pil"."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"unsupported output_type {output_type!r}; supported: {', '.join(OUTPUT_TYPES)}")
        if num_images is not None and num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        net = self.network
        param, process = Parameterisation.from_scheduler(scheduler_config(self.scheduler))
        n, c, num_conds, table = self._conditions(class_labels, prompt, num_images)
        den = DiffusersDenoiser(net, param, process, num_conds=num_conds, cond_table=table)
        student = StudentGenerator(den, list(self.config.student_times))
        size = (den.size, den.size) if isinstance(den.size, int) else tuple(den.size)
        p = next(net.parameters())
        z = torch.randn((n, student.n_steps, den.channels, *size), generator=generator,
                        device=generator.device if generator is not None else "cpu")
        x = student(z.to(p.device), None if c is None else c.to(p.device))
        if self.vae is not None:
            x = decode_latents(self.vae, x)
        images = (x.float() / 2 + 0.5).clamp(0, 1).cpu()
        if output_type == "pt":
            return images
        array = images.permute(0, 2, 3, 1).numpy()
        return array if output_type == "np" else to_pil(array)

    def _conditions(self, class_labels, prompt, num_images) -> tuple[int, Tensor | None, int, Tensor | None]:
        """(batch size, condition indices, num_conds, prompt-embedding table) for one call."""
        num_conds = int(self.config.num_conds)
        if self.text_conditioned:
            if class_labels is not None:
                raise ValueError("this pipeline is text-conditioned: give `prompt`, not `class_labels`")
            if prompt is None:
                raise ValueError("this pipeline is text-conditioned: give `prompt` (a string or a list of strings)")
            prompts = [prompt] * (num_images or 1) if isinstance(prompt, str) else list(prompt)
            _check_count(len(prompts), num_images, "prompt")
            unique = list(dict.fromkeys(prompts))
            table = embed_prompts(self.tokenizer, self.text_encoder, unique)
            c = torch.tensor([unique.index(q) for q in prompts])
            return len(prompts), c, len(unique), table
        if prompt is not None:
            raise ValueError("this pipeline is not text-conditioned: remove `prompt`")
        if num_conds == 0:
            if class_labels is not None:
                raise ValueError("this pipeline is unconditional: remove `class_labels`")
            return num_images or 1, None, 0, None
        if class_labels is None:
            c = torch.arange(num_images or 1) % num_conds  # classes 0, 1, ... cycling
        else:
            c = torch.as_tensor(class_labels, dtype=torch.long)
            c = c.repeat(num_images or 1) if c.ndim == 0 else c.reshape(-1)
            _check_count(len(c), num_images, "class_labels")
            if len(c) == 0 or ((c < 0) | (c >= num_conds)).any():
                raise ValueError(f"class labels must lie in [0, {num_conds}) (0 .. {num_conds - 1}), "
                                 f"got {c.tolist()}")
        return len(c), c, num_conds, None


def _check_count(n: int, num_images: int | None, what: str) -> None:
    if num_images is not None and n != num_images:
        raise ValueError(f"{what} gives {n} images but num_images is {num_images}; pass one value or matching counts")


def to_pil(images: np.ndarray) -> list:
    """(N, H, W, C) in [0, 1] with C = 1, 3 or 4 -> PIL images (L, RGB or RGBA)."""
    from PIL import Image

    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if images.shape[-1] not in modes:
        raise ValueError(f"output_type 'pil' needs 1, 3 or 4 channels, got {images.shape[-1]}")
    pixels = (images * 255).round().astype(np.uint8)
    return [Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p, modes[p.shape[-1]]) for p in pixels]
