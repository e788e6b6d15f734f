"""How the trained networks are spread over processes: `Replicated` or `Sharded` (FSDP2).

Both are data parallel: every process draws its own rows of the global batch (engine/noise.py) and the
gradient each module steps with is the global-batch mean. They differ in what a process holds:

* `Replicated` (`train.parallel: replicated`): every process holds every network whole; after backward one
  flat all-reduce averages the gradients of the modules stepped in this phase. Short and exact, the default
  for networks that fit one device.
* `Sharded` (`train.parallel: fsdp`): PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`, Zhao et al.
  2023, "PyTorch FSDP"). Each process holds 1/world of every trained module's weights, gradients and AdamW
  moments (and of the teacher's weights with `train.shard_teacher`); a unit's weights are all-gathered just
  before its forward (and again in backward), and gradients are reduce-scattered as backward produces them,
  overlapping communication with compute. Units are the networks' blocks (engine DiT blocks, diffusers
  down/mid/up blocks, transformers layers) and the network itself for what is left.

Phases that freeze one network and backpropagate through it (SiD and SIM through the fake score, `uni` through
the discriminator) stay exact under FSDP2: a unit whose parameters do not require grad still all-gathers for
its backward and simply produces no gradient to reduce (`tests/test_multiprocess.py` compares the weights with
one process). Weights stay float32 and are gathered in float32; autocast (`train.mixed_precision`) picks each
op's dtype as in a replicated run, and gradients are reduced in float32.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import Tensor, nn

# class-name endings of the blocks sharded as their own FSDP units (the outermost match; nothing nested): engine
# DiT and transformers blocks, diffusers down/up/mid blocks, transformers layers
UNIT_SUFFIXES = ("Block", "Block2D", "Block2DCrossAttn", "DecoderLayer", "EncoderLayer")


def is_dtensor(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def local(t: Tensor) -> Tensor:
    """This process's part of a (possibly sharded) tensor: the local shard of a DTensor, else the tensor."""
    return t.to_local() if is_dtensor(t) else t


def plain(t: Tensor) -> Tensor:
    """The whole value of a DTensor (a collective: every process must call it), else the tensor itself."""
    return t.full_tensor() if is_dtensor(t) else t


def broadcast_weights(module: nn.Module) -> None:
    """Every process starts from process 0's weights and buffers, as DDP does."""
    for tensor in module.state_dict().values():
        torch.distributed.broadcast(tensor, src=0)


class Replicated:
    """Every process holds every network whole; gradients are averaged by one flat all-reduce."""

    sharded = False

    def __init__(self, world: int, device: torch.device):
        self.world, self.device = world, device

    def prepare(self, modules: dict[str, nn.Module], teachers: dict[str, nn.Module]) -> None:
        for m in modules.values():
            m.to(self.device)
            if self.world > 1:
                broadcast_weights(m)

    def reduce_gradients(self, params: list[nn.Parameter]) -> None:
        """Average gradients over processes (zeros where a parameter got none, so every rank sends one layout)."""
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        i = 0
        for p, g in zip(params, grads):
            avg = flat[i:i + g.numel()].view_as(g)
            if p.grad is None:
                p.grad = avg.clone()
            else:
                p.grad.copy_(avg)
            i += g.numel()

    def requires_grad_changed(self, module: nn.Module) -> None:
        """Nothing to do: the weights are the parameters themselves."""


class Sharded:
    """FSDP2 over one mesh of all processes: every trained module sharded, the teachers too if asked."""

    sharded = True

    def __init__(self, world: int, device: torch.device):
        if not torch.distributed.is_available():
            raise ValueError("train.parallel = 'fsdp' needs torch.distributed, which this PyTorch build lacks")
        self.world, self.device = world, device
        # process 0's whole copy of every trained module, kept on the CPU, for evaluation and export
        self.replicas: dict[str, nn.Module] = {}

    def prepare(self, modules: dict[str, nn.Module], teachers: dict[str, nn.Module]) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        if not torch.distributed.is_initialized():  # one process (a single GPU): a group of one, in memory
            backend = "gloo" if self.device.type == "cpu" else f"{self.device.type}:nccl,cpu:gloo"
            torch.distributed.init_process_group(backend, store=torch.distributed.HashStore(), rank=0, world_size=1)
        mesh = init_device_mesh(self.device.type, (self.world,))
        # weights are gathered in float32 and autocast picks each op's dtype, as in a replicated run (gathering
        # them in the half dtype, FSDP2's param_dtype, breaks ops autocast leaves in float32 with half weights:
        # the CPU's layer norm refuses them); gradients are reduced in float32
        policy = MixedPrecisionPolicy(param_dtype=None, reduce_dtype=torch.float32)
        for name, m in {**modules, **teachers}.items():
            m.to(self.device)
            if self.world > 1 and name in modules:
                broadcast_weights(m)
            if name in modules and torch.distributed.get_rank() == 0:
                self.replicas[name] = copy.deepcopy(m).to("cpu")
            for unit in units(m):
                fully_shard(unit, mesh=mesh, mp_policy=policy)
            fully_shard(m, mesh=mesh, mp_policy=policy)

    def reduce_gradients(self, params: list[nn.Parameter]) -> None:
        """Nothing to do: FSDP2 reduce-scattered each gradient to its shard during backward."""

    def requires_grad_changed(self, module: nn.Module) -> None:
        """Free the gathered weights of a module whose parameters were switched on or off for a phase. FSDP2
        copies `requires_grad` onto the gathered weights only when it gathers them, and the network itself is
        not resharded after a forward without backward (the auxiliary phase runs the generator under no_grad),
        so without this the next phase would reuse weights that still carry the old flag."""
        from torch.distributed.fsdp import FSDPModule

        for m in module.modules():
            if isinstance(m, FSDPModule):
                m.reshard()

    def gather(self, name: str, state: dict[str, Tensor]) -> None:
        """Copy a module's whole state (`state`: its sharded tensors, or the generator's EMA) into process 0's
        copy, one tensor at a time (a collective: every process calls it with the same keys)."""
        held = self.replicas[name].state_dict() if self.replicas else None
        with torch.no_grad():
            for k, v in state.items():
                whole = plain(v)
                if held is not None:
                    held[k].copy_(whole)

    @contextlib.contextmanager
    def whole(self, modules: dict[str, nn.Module]):
        """On process 0, each module *is* its whole copy for the block (True is yielded; the other processes get
        False): the two objects swap their contents, so every holder of the sharded module (a backend's export
        reading its discriminator, a loss closure) sees the whole network, on the device; afterwards they swap
        back and the copies return to the CPU. Call `gather` first."""
        if not self.replicas:
            yield False
            return
        swapped = []
        try:
            for name, m in modules.items():
                replica = self.replicas[name].to(self.device)
                _swap(m, replica)
                swapped.append((m, replica))
            yield True
        finally:
            for m, replica in reversed(swapped):
                _swap(m, replica)
                replica.to("cpu")


def _swap(a: nn.Module, b: nn.Module) -> None:
    """Exchange two modules' identities: contents (parameters, buffers, children, hooks) and class."""
    a.__dict__, b.__dict__ = b.__dict__, a.__dict__
    a.__class__, b.__class__ = b.__class__, a.__class__


def units(module: nn.Module) -> list[nn.Module]:
    """The outermost blocks of `module` (by class-name ending, UNIT_SUFFIXES) that hold parameters; a block
    inside a chosen block belongs to that block's unit."""
    found: list[nn.Module] = []

    def walk(m: nn.Module) -> None:
        for child in m.children():
            if type(child).__name__.endswith(UNIT_SUFFIXES) and any(True for _ in child.parameters()):
                found.append(child)
            else:
                walk(child)

    walk(module)
    return found


def make(kind: str, world: int, device: torch.device) -> Replicated | Sharded:
    return {"replicated": Replicated, "fsdp": Sharded}[kind](world, device)
