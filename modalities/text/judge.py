"""The judge: a small causal LM (transformers GPT2LMHeadModel built from a config) trained on the same
corpus, for generative perplexity (MDLM's protocol with a local judge instead of GPT-2 large), and
per-sample unigram entropy of token ids (nats). Sequences are scored after an EOS used as BOS."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from unidistill.engine.builders import check_options
from unidistill.engine.config import ConfigError
from unidistill.engine.objective import Objective, Outputs


def build_judge(network: dict, vocab_size: int, length: int, eos_id: int):
    """A fresh GPT2LMHeadModel; n_positions must hold the BOS plus `length` tokens; EOS doubles as BOS."""
    from transformers import GPT2Config, GPT2LMHeadModel

    check_options(GPT2Config, network, "network", "GPT2Config (the judge)")
    cfg = {"n_positions": length + 1, **network, "vocab_size": vocab_size, "bos_token_id": eos_id,
           "eos_token_id": eos_id}
    try:
        config = GPT2Config(**cfg)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key network: {e}") from None
    if config.n_positions < length + 1:
        raise ConfigError(f"config key network.n_positions = {config.n_positions}; "
                          f"the judge needs length + 1 = {length + 1}")
    return GPT2LMHeadModel(config)


def token_nll(judge, x: Tensor, bos_id: int) -> Tensor:
    """-log p_judge(x_i | BOS, x_<i) per token, (B, L), differentiable."""
    inp = torch.cat([torch.full_like(x[:, :1], bos_id), x[:, :-1]], 1)
    logits = judge(input_ids=inp).logits.float()
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), x, reduction="none")


@torch.no_grad()
def generative_perplexity(judge, x: Tensor, bos_id: int, batch: int = 64) -> float:
    """exp of the judge's mean next-token NLL pooled over every token of every sample (MDLM's GenPPL)."""
    if x.ndim != 2 or x.numel() == 0:
        raise ValueError(f"samples must be a non-empty (N, L) tensor of token ids, got {tuple(x.shape)}")
    vocab = judge.config.vocab_size
    if int(x.max()) >= vocab or int(x.min()) < 0:
        raise ValueError(f"sample token ids span {int(x.min())}..{int(x.max())}; "
                         f"the judge's vocabulary is 0..{vocab - 1}")
    was = judge.training
    judge.eval()
    total = sum(float(token_nll(judge, x[i:i + batch], bos_id).double().sum()) for i in range(0, len(x), batch))
    judge.train(was)
    return math.exp(total / x.numel())


def unigram_entropy(x: Tensor) -> float:
    """Mean over samples of the entropy (nats) of each sample's own token-frequency distribution."""
    out = []
    for row in x:
        _, counts = torch.unique(row, return_counts=True)
        p = counts.double() / counts.sum()
        out.append(float(-(p * p.log()).sum()))
    return sum(out) / len(out)


class CausalLMObjective(Objective):
    """The Trainer's objective for the judge: next-token cross-entropy after BOS, per example (nats/token)."""

    name = "teach judge"

    def __init__(self, judge, data, bos_id: int, outputs: Outputs | None = None):
        super().__init__(outputs)
        self.modules = {"generator": judge}
        self.data, self.bos_id = data, bos_id

    def generator_loss(self, noise, n, progress):
        loss = token_nll(self.modules["generator"], self.data(noise, n), self.bos_id).mean(-1)
        return loss, {"nll": loss.detach().mean()}
