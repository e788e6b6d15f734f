"""The toy chain's run outputs: the student a config describes, and sampling it."""
from __future__ import annotations

import torch

from unidistill.engine import masked_sampling
from unidistill.engine.backend import Drawn, Sampler
from unidistill.engine.config import ConfigError
from unidistill.engine.process import MaskingProcess

from .chain import MarkovChainTeacher
from .config import MarkovConfig
from .student import MaskedDenoiser


def chain_of(cfg: MarkovConfig) -> MarkovChainTeacher:
    try:
        return MarkovChainTeacher.from_config(cfg.chain)
    except ValueError as e:
        raise ConfigError(f"config key chain: {e}") from None


def student_for(cfg: MarkovConfig) -> tuple[MaskedDenoiser, MaskingProcess, MarkovChainTeacher]:
    chain = chain_of(cfg)
    if cfg.steps < 1:
        raise ConfigError(f"config key steps must be >= 1, got {cfg.steps}")
    try:
        student = MaskedDenoiser(chain.vocab, chain.length, cfg.hidden)
    except ValueError as e:
        raise ConfigError(f"config key hidden: {e}") from None
    return student, MaskingProcess(mask_id=chain.vocab, eps=0.0), chain


def sampler(cfg: MarkovConfig) -> Sampler:
    student, process, chain = student_for(cfg)

    def draw(s, n, seed):
        g = torch.Generator().manual_seed(seed)
        x = masked_sampling.rollout(s, n, cfg.steps, process, chain.length, g, vocab=chain.vocab).x.numpy()
        return Drawn(x, about=f"token sequences in 0..{chain.vocab - 1}, {cfg.steps}-step sampler")

    return Sampler(student, draw)
