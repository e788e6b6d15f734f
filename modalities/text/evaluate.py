"""Sample quality: generative perplexity under the judge and unigram entropy (MDLM / DiDi-Instruct)."""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from .judge import generative_perplexity, unigram_entropy


@functools.lru_cache(maxsize=4)
def load_judge(folder: str):
    from transformers import GPT2LMHeadModel

    judge = GPT2LMHeadModel.from_pretrained(folder, local_files_only=True)
    return judge.eval().requires_grad_(False)


def score_samples(x: torch.Tensor, judge_dir: str | Path, bos_id: int | None = None) -> dict[str, float]:
    judge = load_judge(str(judge_dir))
    bos = judge.config.eos_token_id if bos_id is None else bos_id
    return {"gen_ppl": generative_perplexity(judge, x, bos), "entropy": unigram_entropy(x)}
