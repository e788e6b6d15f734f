"""Randomness that does not depend on how many processes share a batch.

Every process draws the whole global batch from the same seeded stream and keeps its own rows,
so a run on 2 processes sees exactly the samples a 1-process run sees with the same global batch.
Drawing a few extra latents is cheap next to the networks that consume them.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


class Noise:
    """A seeded torch.Generator shared (by seed) across processes; each call returns this rank's slice."""

    def __init__(self, seed: int, rank: int = 0, world: int = 1, device: torch.device | str = "cpu",
                 max_bytes: int | None = None):
        """`max_bytes` bounds one draw of the global batch: a batch size that would not fit in memory fails
        at its first draw, in one line naming its size, before the networks allocate anything for it."""
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside world size {world}")
        self.rank, self.world = rank, world
        self.device = torch.device(device)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.max_bytes = max_bytes

    def _check(self, n: int, shape: tuple[int, ...]) -> None:
        if self.max_bytes is not None:
            size = n * self.world * math.prod(shape) * 4
            if size > self.max_bytes:
                raise MemoryError(f"one draw of the batch ({n * self.world} x {tuple(shape)}) needs {size / 2**30:.1f} "
                                  f"GiB, more than this machine can hold with the networks")

    def _slice(self, x: Tensor, n: int) -> Tensor:
        return x[self.rank * n:(self.rank + 1) * n].to(self.device)

    def randn(self, n: int, *shape: int) -> Tensor:
        """(n, *shape) standard normal rows for this rank (n is the per-process batch)."""
        self._check(n, shape)
        return self._slice(torch.randn(n * self.world, *shape, generator=self.generator), n)

    def rand(self, n: int, *shape: int) -> Tensor:
        self._check(n, shape)
        return self._slice(torch.rand(n * self.world, *shape, generator=self.generator), n)

    def randint(self, high: int, n: int, *shape: int) -> Tensor:
        self._check(n, shape)
        return self._slice(torch.randint(high, (n * self.world, *shape), generator=self.generator), n)

    def draw(self, fn: Callable[[int, torch.Generator], Tensor], n: int) -> Tensor:
        """Call fn(global_n, generator) on the CPU stream and return this rank's rows."""
        return self._slice(fn(n * self.world, self.generator), n)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
