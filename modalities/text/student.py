"""A finished DiDi-Instruct run as a generator: the exported student folder and its discriminator
(for the reward-guided sampler)."""
from __future__ import annotations

from pathlib import Path

import yaml

from unidistill.engine.config import ConfigError

from .masked_lm import load_masked_lm


def load_run(run: str | Path):
    """(student, tokenizer, discriminator or None) from a run directory written by `unidistill distill`."""
    from safetensors.torch import load_file

    from .discriminator import TokenDiscriminator

    run = Path(run)
    if not (run / "student").is_dir():
        raise ConfigError(f"run {run} has no student/ folder; it is written when `unidistill distill` finishes")
    student, tok = load_masked_lm(run / "student")
    student.eval().requires_grad_(False)
    disc = None
    if (run / "discriminator.safetensors").is_file():
        cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
        disc = TokenDiscriminator(student, int(cfg.get("trainable_blocks", 1)))
        disc.load_state_dict(load_file(str(run / "discriminator.safetensors")))
        disc.eval().requires_grad_(False)
    return student, tok, disc
