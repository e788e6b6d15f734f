"""Tiny random text models built offline: an MDLM teacher folder and a judge folder, both with the shipped tokenizer."""
from __future__ import annotations

from pathlib import Path

import torch


def tiny_mdlm(folder: Path, length: int = 16, time_conditioning: bool = False) -> Path:
    from unidistill.modalities.text.io import SHIPPED
    from unidistill.modalities.text.masked_lm import save_masked_lm
    from unidistill.modalities.text.mdlm import MDLMConfig, MDLMModel
    from unidistill.modalities.text.tokenizer import load_tokenizer

    tok = load_tokenizer(SHIPPED["tokenizer"])
    cfg = MDLMConfig(vocab_size=len(tok), mask_token_id=tok.mask_token_id, max_position_embeddings=length,
                     hidden_size=32, num_layers=2, num_heads=2, time_conditioning=time_conditioning)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MDLMModel(cfg)
        torch.nn.init.normal_(model.head.linear.weight, std=0.1)
    return save_masked_lm(model, tok, folder)


def tiny_judge(folder: Path, length: int = 16) -> Path:
    from unidistill.modalities.text.io import SHIPPED
    from unidistill.modalities.text.judge import build_judge
    from unidistill.modalities.text.masked_lm import save_masked_lm
    from unidistill.modalities.text.tokenizer import load_tokenizer

    tok = load_tokenizer(SHIPPED["tokenizer"])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        judge = build_judge({"n_embd": 16, "n_layer": 1, "n_head": 2}, len(tok), length, tok.eos_token_id)
    return save_masked_lm(judge, tok, folder)
