"""Memory and speed switches for a run's networks: activation checkpointing and a compiled forward.

Both act in place and keep what a network is: its parameters, its state-dict keys (a checkpoint written with
a switch on loads with it off) and its function. Checkpointing stores a block's inputs only and recomputes the
block in backward (the same operations, so the same gradients, for less activation memory and about one
more forward pass of time); a compiled forward is the same function up to floating-point reassociation."""
from __future__ import annotations

import sys

from torch import nn

from .nn.attention import checkpointed
from .nn.dit import DiTBlock


def enable_activation_checkpointing(module: nn.Module) -> int:
    """Switch on activation checkpointing in every block of `module` that supports it, nested ones included,
    and return how many were switched: each engine `DiTBlock`, and each diffusers model whose class supports
    gradient checkpointing (one per model: diffusers then checkpoints its own blocks). Networks with
    neither are left as they are, so 0 means the switch does nothing for this network."""
    switched = 0
    pending = [module]
    while pending:
        m = pending.pop()
        if isinstance(m, DiTBlock):
            m.checkpointing = True
            switched += 1
        elif _checkpointable_diffusers(m):
            m.enable_gradient_checkpointing(_diffusers_checkpoint)
            switched += 1
        else:
            pending.extend(m.children())
    return switched


def _checkpointable_diffusers(m: nn.Module) -> bool:
    """Whether m is a diffusers ModelMixin that supports gradient checkpointing. Read from the loaded
    diffusers module: no model can be one unless diffusers was imported, so this never imports it."""
    modeling = sys.modules.get("diffusers.models.modeling_utils")
    mixin = getattr(modeling, "ModelMixin", None)
    return mixin is not None and isinstance(m, mixin) and bool(m._supports_gradient_checkpointing)


def _diffusers_checkpoint(block: nn.Module, *args):
    """diffusers' checkpoint function hook: the engine's (non-reentrant, keeps twice-differentiable attention)."""
    return checkpointed(block.__call__, *args)


def compile_forward(module: nn.Module) -> nn.Module:
    """Compile `module`'s forward with torch.compile (TorchInductor; on CPU it needs a C++ compiler) in place
    and return the same module.

    `nn.Module.compile()` compiles the module's call rather than wrapping it (as `torch.compile(module)` does),
    so its parameters, state-dict keys and the objects that hold it are unchanged: the trainer, the EMA and
    checkpoints see the same network. Compilation happens at the first call (seconds to minutes) and again
    when input shapes or grad mode change; the time it saves is per step afterwards, so it pays on long runs."""
    module.compile()
    return module
