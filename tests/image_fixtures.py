"""Tiny randomly initialised diffusers teachers built offline from configs, written as folders."""
from __future__ import annotations

import json
from pathlib import Path

import torch

EDM = {"_class_name": "EDMEulerScheduler", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.75,
       "prediction_type": "epsilon"}
FLOW = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000}
DDPM = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
        "beta_schedule": "linear", "prediction_type": "epsilon"}


def tiny_unet(num_class_embeds: int | None = 11, size: int = 8, channels: int = 1):
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
                       num_class_embeds=num_class_embeds)


def write_teacher(folder: Path, net, scheduler: dict, seed: int = 0) -> Path:
    """Save net under unet/ (or transformer/ for DiT) and the scheduler config; returns the folder."""
    torch.manual_seed(seed)
    sub = "transformer" if type(net).__name__.startswith("DiT") else "unet"
    net.save_pretrained(folder / sub)
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    return folder


def tiny_digits_teacher(folder: Path, scheduler: dict | None = None) -> Path:
    torch.manual_seed(0)
    return write_teacher(folder, tiny_unet(), scheduler or EDM)


SD = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
      "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}


def tiny_sd_teacher(folder: Path, scheduler: dict | None = None, seed: int = 0) -> Path:
    """A Stable-Diffusion-shaped folder: UNet2DConditionModel on 4x8x8 latents, a CLIP text encoder and
    tokenizer (character vocabulary, 16 tokens), an AutoencoderKL for 3x16x16 pictures, an SD scheduler."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in chars:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    tok.save_pretrained(folder / "tokenizer")
    enc = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                       num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                                       bos_token_id=0, eos_token_id=1, pad_token_id=1))
    enc.save_pretrained(folder / "text_encoder")
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=4, norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=16)
    vae.save_pretrained(folder / "vae")
    return write_teacher(folder, unet, scheduler or SD, seed)
