"""Scaled dot-product attention, softmax(Q K^T / sqrt(d)) V (Vaswani et al. 2017, eq. 1)."""
from __future__ import annotations

import contextlib
import importlib
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

_XFORMERS_OPS: ModuleType | None = None
_XFORMERS_TRIED = False
_TWICE = False  # inside twice_differentiable()


@contextlib.contextmanager
def twice_differentiable():
    """Attention whose backward is itself differentiable, for a gradient taken through a network and then
    backpropagated again (DIDR's proxy inside the score family): SDPA's math kernel, never xformers. The flash
    and memory-efficient kernels (and xformers) have no second derivative."""
    global _TWICE
    from torch.nn.attention import SDPBackend, sdpa_kernel

    before, _TWICE = _TWICE, True
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        _TWICE = before


class _Twice:
    """twice_differentiable() as a context that can be entered again (a recompute per backward)."""

    def __init__(self):
        self._open: list = []

    def __enter__(self):
        self._open.append(twice_differentiable())
        self._open[-1].__enter__()

    def __exit__(self, *exc):
        return self._open.pop().__exit__(*exc)


def checkpointed(fn, *args):
    """fn(*args) with its activations recomputed in backward instead of stored (non-reentrant checkpoint,
    `engine.speedups`). A call made inside twice_differentiable() recomputes inside it too, so the
    recomputed attention keeps its second derivative; elsewhere torch's default contexts are used, which
    torch.compile requires."""
    if not _TWICE:
        return checkpoint(fn, *args, use_reentrant=False)
    return checkpoint(fn, *args, use_reentrant=False, context_fn=lambda: (contextlib.nullcontext(), _Twice()))


def _xformers_ops() -> ModuleType | None:
    """Import xformers.ops once, lazily; cache the module or None if it is unavailable."""
    global _XFORMERS_OPS, _XFORMERS_TRIED
    if not _XFORMERS_TRIED:
        _XFORMERS_TRIED = True
        try:
            _XFORMERS_OPS = importlib.import_module("xformers.ops")
        except (ImportError, OSError, RuntimeError):  # absent, or a broken CUDA build
            _XFORMERS_OPS = None
    return _XFORMERS_OPS


def _use_xformers(q: Tensor) -> bool:
    """xformers only for CUDA half-precision tensors, and only if it imports."""
    if _TWICE or not q.is_cuda or q.dtype not in (torch.float16, torch.bfloat16):
        return False
    return _xformers_ops() is not None


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """softmax(Q K^T / sqrt(D)) V (Vaswani et al. 2017, eq. 1); q, k, v (B, H, L, D) -> (B, H, L, D).

    mask: bool (True = attend) or additive float, broadcastable to (B, H, Lq, Lk).
    """
    if _use_xformers(q):
        ops = _xformers_ops()
        bias = None
        if mask is not None:
            b, h, lq, lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
            if mask.dtype == torch.bool:
                bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device)
                bias = bias.masked_fill(~mask, float("-inf"))
            else:
                bias = mask.to(q.dtype)
            bias = bias.expand(b, h, lq, lk)
        out = ops.memory_efficient_attention(  # xformers wants (B, L, H, D)
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias
        )
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017, sec. 3.2.2); x (B, L, dim) -> (B, L, dim)."""

    def __init__(self, dim: int, heads: int, bias: bool = True) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """key_padding_mask: bool (B, L), True marks padding keys that are ignored."""
        b, n, dim = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        mask = None
        if key_padding_mask is not None:
            mask = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, L), True = attend
        out = attention(qkv[0], qkv[1], qkv[2], mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, dim))
