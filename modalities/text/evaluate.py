"""Sample quality: generative perplexity under the judge and unigram entropy (MDLM / DiDi-Instruct)."""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from .judge import generative_perplexity, unigram_entropy


@functools.lru_cache(maxsize=4)
def load_judge(folder: str):
    from transformers import GPT2LMHeadModel

    from .tokenizer import quiet_transformers

    quiet_transformers()
    # safetensors only (never unpickle); shipped in fp16, run in fp32
    judge = GPT2LMHeadModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).float()
    return judge.eval().requires_grad_(False)


def check_judge(judge_dir, tokenizer, length: int, where: str = "eval.judge") -> None:
    """The judge must share the tokenizer's vocabulary and fit BOS + length tokens."""
    import json

    from unidistill.engine.config import ConfigError

    cfg = json.loads((Path(judge_dir) / "config.json").read_text())
    if cfg.get("vocab_size") != len(tokenizer):
        raise ConfigError(f"config key {where}: the judge in {judge_dir} has vocabulary {cfg.get('vocab_size')}, "
                          f"the tokenizer {len(tokenizer)}; a judge must be trained with the same tokenizer")
    if cfg.get("n_positions", 0) < length + 1:
        raise ConfigError(f"config key {where}: the judge in {judge_dir} reads {cfg.get('n_positions')} positions; "
                          f"samples need length + 1 = {length + 1}")


def score_samples(x: torch.Tensor, judge_dir: str | Path, bos_id: int | None = None) -> dict[str, float]:
    judge = load_judge(str(judge_dir))
    bos = judge.config.eos_token_id if bos_id is None else bos_id
    return {"gen_ppl": generative_perplexity(judge, x, bos), "entropy": unigram_entropy(x)}
