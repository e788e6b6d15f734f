"""Activation checkpointing gives the same gradients for less saved memory; a compiled forward gives the same
outputs. Networks: a small stack of engine DiT blocks and a tiny diffusers UNet2DModel with attention."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from unidistill.engine.memory import saved_bytes
from unidistill.engine.nn import DiTBlock
from unidistill.engine.nn.attention import twice_differentiable
from unidistill.engine.speedups import compile_forward, enable_activation_checkpointing

pytestmark = pytest.mark.usefixtures("one_thread")


class DiTStack(nn.Module):
    """Three DiT blocks (nested one level down, as in a real network) and a linear head."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.body = nn.ModuleDict({"blocks": nn.ModuleList(DiTBlock(dim, heads=4) for _ in range(3))})
        self.head = nn.Linear(dim, dim)
        for p in self.parameters():  # adaLN-Zero starts as the identity: perturb so every block matters
            nn.init.normal_(p, std=0.2)

    def forward(self, x, t, c=None):
        cond = torch.sin(t)[:, None].expand(-1, x.shape[-1])
        for block in self.body["blocks"]:
            x = block(x, cond)
        return self.head(x)


def tiny_unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=4,
                       num_class_embeds=11)


def dit_case():
    torch.manual_seed(0)
    return DiTStack(), torch.randn(4, 6, 16), torch.rand(4) + 0.1, None


def unet_case():
    torch.manual_seed(1)
    return tiny_unet(), torch.randn(4, 1, 8, 8), torch.tensor([0.5, 2.0, 10.0, 40.0]), torch.tensor([0, 3, 7, 10])


def call(net, x, t, c):
    out = net(x, t, c)
    return out if torch.is_tensor(out) else out.sample


def gradients(net, x, t, c):
    """(input gradient, parameter gradients, bytes saved for backward) of sum(out^2)."""
    x = x.clone().requires_grad_(True)
    net.zero_grad(set_to_none=True)
    out, saved = saved_bytes(lambda: call(net, x, t, c), exclude=net.parameters())
    out.square().sum().backward()
    return x.grad, [p.grad for p in net.parameters() if p.requires_grad], saved


@pytest.mark.parametrize("case,count", [(dit_case, 3), (unet_case, 1)], ids=["dit", "unet"])
@pytest.mark.parametrize("frozen", [False, True], ids=["trained", "frozen"])
def test_checkpointing_keeps_gradients_and_saves_memory(case, count, frozen):
    """Same gradients (input and weights; only the input's when the network is frozen, as distillation
    backpropagates through a frozen fake score), fewer saved bytes. The count and the drop fail if
    enable_activation_checkpointing switched nothing on."""
    net, x, t, c = case()
    net.requires_grad_(not frozen)
    plain = copy.deepcopy(net)
    assert enable_activation_checkpointing(net) == count
    gx0, gp0, bytes0 = gradients(plain, x, t, c)
    gx1, gp1, bytes1 = gradients(net, x, t, c)
    torch.testing.assert_close(gx1, gx0, rtol=0, atol=1e-6)
    assert len(gp1) == len(gp0) == (0 if frozen else len(list(net.parameters())))
    for a, b in zip(gp1, gp0):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert bytes1 < 0.7 * bytes0, (bytes1, bytes0)
    assert gradients(copy.deepcopy(plain), x, t, c)[2] == bytes0  # the probe itself is stable: the drop is real


def test_checkpointing_is_off_by_default_and_without_grad():
    net, x, t, c = dit_case()
    assert not any(b.checkpointing for b in net.body["blocks"])
    before = call(net, x, t, c)
    enable_activation_checkpointing(net)
    assert all(b.checkpointing for b in net.body["blocks"])
    with torch.no_grad():  # nothing to save: the block runs as it is
        assert torch.equal(call(net, x, t, c), before)


def test_checkpointing_counts_blocks_and_diffusers_models():
    """Nested blocks are found; a diffusers model counts once; a network with neither counts 0."""
    holder = nn.ModuleDict({"a": DiTStack(), "b": nn.Sequential(nn.Linear(2, 2), DiTBlock(8, 2)),
                            "unet": tiny_unet()})
    assert enable_activation_checkpointing(holder) == 3 + 1 + 1
    assert holder["unet"].down_blocks[0].gradient_checkpointing
    assert enable_activation_checkpointing(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) == 0


def test_checkpointing_keeps_the_second_derivative_of_attention():
    """Inside twice_differentiable() (DIDR's proxy) the recomputed attention stays twice differentiable."""
    net, x, t, c = dit_case()
    plain = copy.deepcopy(net)
    enable_activation_checkpointing(net)
    out = []
    for m in (plain, net):
        xr = x.clone().requires_grad_(True)
        with twice_differentiable():
            (g,) = torch.autograd.grad(call(m, xr, t, c).square().sum(), xr, create_graph=True)
            (gg,) = torch.autograd.grad(g.square().sum(), xr)
        out.append(gg)
    torch.testing.assert_close(out[1], out[0], rtol=0, atol=1e-5)


def test_compile_forward_keeps_the_module_and_its_state_dict_keys():
    net = DiTStack()
    keys = list(net.state_dict())
    assert compile_forward(net) is net  # compiled lazily, at the first call
    assert list(net.state_dict()) == keys


@pytest.mark.slow
@pytest.mark.parametrize("case", [dit_case, unet_case], ids=["dit", "unet"])
def test_compiled_forward_equals_eager(case):
    """About 25 s each on CPU (TorchInductor compiles C++)."""
    net, x, t, c = case()
    eager = copy.deepcopy(net)
    compile_forward(net)
    with torch.no_grad():
        torch.testing.assert_close(call(net, x, t, c), call(eager, x, t, c), rtol=0, atol=1e-5)
