"""A Stable-Diffusion-1.5-shaped teacher folder with random weights, for benchmarks/gpu_check.py: the diffusers
and transformers configs of SD's UNet and CLIP text encoder (full and tiny sizes) and a writer that saves them
with a character-level CLIP tokenizer and SD's DDPM schedule. Nothing is downloaded."""
from __future__ import annotations

import json
from pathlib import Path

import torch

SD_UNET = {"sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
           "block_out_channels": (320, 640, 1280, 1280),
           "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
           "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
           "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32}
SD_TEXT = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 1, "num_attention_heads": 12}
QUICK_UNET = {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
              "block_out_channels": (32, 64), "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
              "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"), "cross_attention_dim": 32,
              "attention_head_dim": 8, "norm_num_groups": 8}
QUICK_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
TEXT_TOKENS = 77
SD_SCHEDULER = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
                "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}


def write_sd_teacher(folder: Path, unet: dict, text: dict, seed: int = 0) -> Path:
    """A Stable-Diffusion-shaped teacher folder with random weights, written from configs (nothing downloaded):
    unet/ (UNet2DConditionModel), text_encoder/ (a CLIP text model, one layer, 77 positions), tokenizer/ (CLIP
    format with a character vocabulary and no merges) and scheduler/ (SD's DDPM schedule). No vae/: training
    runs on latents and never decodes them."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    folder = Path(folder)
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>"}
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    tok = folder / "tokenizer"
    tok.mkdir(parents=True, exist_ok=True)
    (tok / "vocab.json").write_text(json.dumps(vocab))
    (tok / "merges.txt").write_text("#version: 0.2\n")
    (tok / "special_tokens_map.json").write_text(json.dumps(special))
    (tok / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CLIPTokenizer",
                                                            "model_max_length": TEXT_TOKENS, **special}))
    CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), max_position_embeddings=TEXT_TOKENS, bos_token_id=0,
                                 eos_token_id=1, pad_token_id=1, **text)).save_pretrained(folder / "text_encoder")
    UNet2DConditionModel(**unet).save_pretrained(folder / "unet")
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD_SCHEDULER))
    return folder
