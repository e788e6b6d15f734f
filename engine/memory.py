"""How much memory a run needs per process, told before it trains.

The static parts follow from the networks (weights, gradients, AdamW moments, the generator's EMA, frozen
networks such as the teacher), divided over processes where they are sharded. Activations are measured: the
objective's losses are run for per-process batches 1 and 2 while the tensors autograd saves for backward are
counted, and the count is extrapolated linearly to the run's batch. Transient buffers (a backward's gradients
of activations, allocator caching) come on top, so read the total as a floor, not a ceiling.
`unidistill estimate CONFIG` prints the estimate with the measured time per step."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .parallel import local

GiB = 2**30
PARTS = {"parameters": "parameters (trained networks)", "gradients": "gradients",
         "optimizer": "optimizer state (AdamW moments)", "ema": "generator EMA",
         "frozen": "frozen networks (teacher, ...)"}


def free_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes free now on `device`: a CUDA device's from the driver (torch.cuda.mem_get_info); the CPU's
    from Linux's MemAvailable (which counts reclaimable cache; other POSIX: free pages); None where that
    cannot be read."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _storage(t: Tensor) -> tuple[tuple, int] | None:
    """((device, address), bytes) of the storage behind t, or None for a tensor without one."""
    try:
        s = local(t).untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None
    return (str(t.device), s.data_ptr()), s.nbytes()


def saved_bytes(fn: Callable[[], Any], exclude: Iterable[Tensor] = ()) -> tuple[Any, int]:
    """(fn(), bytes of the distinct storages autograd saved for backward while fn ran), on any device.

    Tensors sharing a storage count once (a view saved beside its base, one tensor saved by two operations);
    storages of `exclude` (a network's weights, which a layer saves but the estimate counts elsewhere) count
    not at all. A checkpointed block hides what it saves from these hooks and shows only its inputs, which
    is what it keeps."""
    skip = {key for key, _ in filter(None, map(_storage, exclude))}
    seen: dict[tuple, int] = {}

    def pack(t: Tensor) -> Tensor:
        found = _storage(t)
        if found is not None and found[0] not in skip:
            seen[found[0]] = found[1]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        return fn(), sum(seen.values())


def _bytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of the tensors' elements; a DTensor counts whole (its global shape)."""
    return sum(t.numel() * t.element_size() for t in tensors)


def _state(modules: Iterable[nn.Module]) -> list[Tensor]:
    """Distinct parameters and buffers of the modules (a tensor shared between them once)."""
    return list({id(t): t for m in modules for t in (*m.parameters(), *m.buffers())}.values())


def static_bytes(modules: dict[str, nn.Module], frozen: dict[str, nn.Module], shards: int = 1,
                 shard_frozen: bool = False, mixed_precision: str = "no") -> dict[str, int]:
    """Bytes per process of what lives for the whole run, by part (keys of PARTS):

    parameters: weights and buffers of the trained `modules`; gradients: one per parameter that requires grad;
    optimizer: AdamW's two moments per such parameter (in its dtype, as torch allocates them); ema: the
    trainer's copy of the generator's state dict; frozen: weights and buffers of the `frozen` networks not
    among `modules`. The first four are divided by `shards` (FSDP shards them), `frozen` when `shard_frozen`.
    `mixed_precision` changes none of them: weights, gradients and moments keep their dtype under autocast;
    its half-precision copies live in the forward pass, where the activation measurement counts them."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    if mixed_precision not in ("no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {mixed_precision!r}")
    trained = _state(modules.values())
    held = {id(t) for t in trained}
    trainable = [t for t in trained if isinstance(t, nn.Parameter) and t.requires_grad]
    gen = modules.get("generator")
    parts = {"parameters": _bytes(trained), "gradients": _bytes(trainable), "optimizer": 2 * _bytes(trainable),
             "ema": _bytes(gen.state_dict().values()) if gen is not None else 0}
    parts = {k: -(-v // shards) for k, v in parts.items()}
    fixed = _bytes(t for t in _state(frozen.values()) if id(t) not in held)
    parts["frozen"] = -(-fixed // shards) if shard_frozen else fixed
    return parts


def frozen_networks(objective) -> dict[str, nn.Module]:
    """The networks an objective reads but does not train: its `teachers` and its `frozen` networks."""
    trained = {id(m) for m in objective.modules.values()}
    return {k: m for k, m in {**objective.teachers, **objective.frozen}.items() if id(m) not in trained}


def held_bytes(tensors: Iterable[Tensor], device: torch.device | str) -> int:
    """Bytes of the distinct storages of `tensors` that already live on `device`."""
    device = torch.device(device)
    on = [t for t in tensors if t.device.type == device.type and device.index in (None, t.device.index)]
    return sum(dict(filter(None, map(_storage, on))).values())


@dataclass
class Estimate:
    """Memory per process, by part, in bytes; `free` is what the device has free now (None: unknown) and
    `held` the part of `total` this process has already allocated there (its networks, the EMA)."""

    parameters: int
    gradients: int
    optimizer: int
    ema: int
    frozen: int
    activations: int
    batch: int  # per-process batch the activations are for
    device: str
    free: int | None
    held: int = 0
    checkpointing: bool = False  # train.activation_checkpointing: backward recomputes the blocks it did not keep

    @property
    def total(self) -> int:
        return sum(getattr(self, k) for k in (*PARTS, "activations"))

    @property
    def peak(self) -> int:
        """The planning figure: `total` plus the activations once more (backward holds gradients of the saved
        activations), twice more with activation checkpointing (backward also recomputes what was not kept).
        Autograd's saved tensors alone are a floor: against peak RSS measured by benchmarks/memory.py (digits
        UNets of two widths, with and without checkpointing) the increment of training over the built run was
        1.3x-2.0x the floor and 0.78x-0.80x this figure."""
        return self.total + self.activations * (2 if self.checkpointing else 1)

    @property
    def fits(self) -> bool:
        """Whether what is still to be allocated at the peak fits in what is free (True when free is unknown)."""
        return self.free is None or self.peak - self.held <= self.free

    def table(self) -> str:
        """One line per part, GiB with two decimals."""
        rows = [(label, getattr(self, k)) for k, label in PARTS.items()]
        rows += [(f"activations at batch {self.batch} per process", self.activations), ("total", self.total),
                 ("peak to plan for", self.peak)]
        size, unit = (GiB, "GiB") if self.peak >= GiB else (2**20, "MiB")
        lines = [f"memory per process on {self.device}:"]
        lines += [f"  {label:<42}{b / size:>9.2f} {unit}" for label, b in rows]
        free = "unknown" if self.free is None else f"{self.free / GiB:.2f} GiB"
        lines.append(f"  {'free on ' + self.device:<42}{free:>13} ({self.held / size:.2f} {unit} of the total is "
                     "already allocated)")
        return "\n".join(lines + ["  (total is a floor: backward's gradients of the activations and the allocator's "
                                  "slack come on top; the peak counts the activations again, twice with activation "
                                  "checkpointing)"])

    def error(self, advice: str) -> str:
        """The one line that says it does not fit, and `advice` on what to change."""
        return (f"this run needs about {self.peak / GiB:.2f} GiB per process on {self.device} ({self.held / GiB:.2f} "
                f"GiB of it already allocated) but {(self.free or 0) / GiB:.2f} GiB are free; {advice}")


def advice(parallel: str, shard_teacher: bool, checkpointing: bool | None) -> str:
    """What to change when a run does not fit, leaving out what is already on; `checkpointing` None for the
    static check, which neither the batch nor checkpointing changes."""
    ways = [] if checkpointing is None else ["a smaller train.batch_size"]
    if checkpointing is False:
        ways.append("train.activation_checkpointing=true")
    if parallel != "fsdp":
        ways.append("train.parallel=fsdp on more processes")
    elif not shard_teacher:
        ways.append("train.shard_teacher=true")
    ways = ways or ["more processes (train.parallel=fsdp shards over them)"]
    return "try " + (", ".join(ways[:-1]) + " or " if len(ways) > 1 else "") + ways[-1]


def check_static(modules: dict[str, nn.Module], frozen: dict[str, nn.Module], device: torch.device | str,
                 shards: int = 1, shard_frozen: bool = False) -> None:
    """Refuse networks whose weights, gradients, optimizer state, EMA and frozen networks cannot fit in what
    `device` has free, before the first step tries to allocate them (MemoryError, one line with the numbers
    and what to change). What these networks already hold on the device counts as theirs."""
    free = free_memory(device)
    if free is None:
        return
    need = sum(static_bytes(modules, frozen, shards, shard_frozen).values())
    held = held_bytes(_state([*modules.values(), *frozen.values()]), device)
    if need - held > free:
        raise MemoryError(
            f"the networks need about {need / GiB:.2f} GiB per process on {torch.device(device)} for weights, "
            f"gradients, optimizer state, the EMA and frozen networks ({held / GiB:.2f} GiB of it already "
            f"allocated) but {free / GiB:.2f} GiB are free; "
            + advice("fsdp" if shards > 1 else "replicated", shard_frozen, None) + " or smaller networks")


def activation_bytes(trainer, sizes: tuple[int, int] = (1, 2)) -> int:
    """Bytes saved for backward at the trainer's per-process batch, the larger of its two phases (auxiliary
    and generator), each measured at `sizes` with the phase's modules requiring grad and extrapolated
    linearly. Leaves the run as it was: noise and torch's RNG restored, no optimizer stepped, no gradient
    kept; every optimised parameter requires grad afterwards, as when the trainer was built."""
    obj, noise = trainer.obj, trainer.noise
    weights = _state([*obj.modules.values(), *frozen_networks(obj).values()])
    noise_state, rng = noise.state_dict(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def probe(names: list[str], loss: Callable[[int], Any], n: int) -> int:
        trainer._train_only(names)
        with trainer._autocast():
            return saved_bytes(lambda: loss(n), exclude=weights)[1]

    phases = [(["generator"], lambda n: obj.generator_loss(noise, n, trainer.progress))]
    if trainer.aux_names:
        phases.append((trainer.aux_names, lambda n: obj.aux_losses(noise, n, trainer.progress)))
    found = []
    try:
        for names, loss in phases:
            a, b = (probe(names, loss, n) for n in sizes)
            found.append(a + (trainer.n - sizes[0]) * (b - a) / (sizes[1] - sizes[0]))
    finally:
        noise.load_state_dict(noise_state)
        torch.set_rng_state(rng)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        for p in _state(obj.modules.values()):
            p.grad = None
        trainer._train_only(list(obj.modules))
    return max(0, round(max(found)))


def estimate(trainer) -> Estimate:
    """The memory estimate of a constructed engine.trainer.Trainer, per process, on its device; it does not
    change the run (see activation_bytes)."""
    cfg, obj = trainer.cfg, trainer.obj
    fsdp = cfg.parallel == "fsdp"
    frozen = frozen_networks(obj)
    activations = activation_bytes(trainer)
    static = static_bytes(obj.modules, frozen, trainer.world if fsdp else 1, fsdp and cfg.shard_teacher,
                          cfg.mixed_precision)
    device = trainer.acc.device
    held = held_bytes([*_state([*obj.modules.values(), *frozen.values()]), *trainer.ema.values()], device)
    return Estimate(**static, activations=activations, batch=trainer.n, device=str(device),
                    free=free_memory(device), held=held, checkpointing=cfg.activation_checkpointing)
