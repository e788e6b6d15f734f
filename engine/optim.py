"""One AdamW per trained module, with named parameter groups, and its state by parameter name.

`train.lr` gives each module a learning rate ("generator", "fake", ...); a key "module.prefix" makes a
group of that module's parameters whose names start with the prefix (at a name boundary), with its own
rate, e.g. `generator.encoding: 1.0e-2` for a hash-grid encoding beside its MLP. The longest matching
prefix wins; the module's other parameters form its default group "". Checkpoints store the state of
each parameter under its name and each group's settings under the group's name, so a change of
parameter order or grouping is detected rather than silently misapplied."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError


class ModuleOptimizer:
    """AdamW over the parameters of one module that were trainable when it was handed over."""

    def __init__(self, name: str, module: nn.Module, lr: dict[str, float], betas, weight_decay: float):
        base = lr.get(name, lr.get("generator", 1e-4))
        named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError(f"module {name!r} has no trainable parameters (all have requires_grad False)")
        prefixes = sorted((k[len(name) + 1:] for k in lr if k.startswith(name + ".")), key=len, reverse=True)
        if "" in prefixes:
            raise ValueError(f"train.lr key {name + '.'!r} names no parameter prefix; write {name!r} for the module")
        members: dict[str, list[tuple[str, nn.Parameter]]] = {"": [], **{p: [] for p in prefixes}}
        for k, p in named:
            group = next((g for g in prefixes if k == g or k.startswith(g + ".")), "")
            members[group].append((k, p))
        for g in prefixes:
            if not members[g]:
                children = sorted({k.split(".")[0] for k, _ in named})
                raise ValueError(f"train.lr key {name}.{g} matches no trainable parameter of {name!r}; "
                                 f"its top-level parts are: {', '.join(children)}")
        self.name = name
        self.groups = [g for g in members if members[g]]  # "" first, then longest prefix first
        self.params = [p for _, p in named]  # module order: clipping and all-reduce see this list
        self.base_lr = [base if g == "" else lr[f"{name}.{g}"] for g in self.groups]
        self.names = [k for g in self.groups for k, _ in members[g]]  # optimizer index -> parameter name
        self.opt = torch.optim.AdamW(
            [{"params": [p for _, p in members[g]], "lr": r, "group": g} for g, r in zip(self.groups, self.base_lr)],
            betas=tuple(betas), weight_decay=weight_decay)

    def step(self, factor: float) -> None:
        """One AdamW step with every group's rate scaled by the schedule's factor."""
        for g, r in zip(self.opt.param_groups, self.base_lr):
            g["lr"] = r * factor
        self.opt.step()

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def state(self) -> tuple[dict[str, Tensor], dict]:
        """Tensors keyed `optim.<module>.<parameter>.<key>` and JSON metadata (group settings, scalars)."""
        sd = self.opt.state_dict()
        tensors, scalars = {}, {}
        for idx, st in sd["state"].items():
            for key, val in st.items():
                where = f"{self.names[idx]}.{key}"
                if torch.is_tensor(val):
                    tensors[f"optim.{self.name}.{where}"] = val
                else:
                    scalars[where] = val
        groups = {g["group"]: {k: v for k, v in g.items() if k not in ("params", "group")} for g in sd["param_groups"]}
        return tensors, {"groups": groups, "scalars": scalars}

    def load(self, tensors: dict[str, Tensor], meta: dict, device) -> None:
        if "param_groups" in meta:  # written before groups had names: indices in parameter order
            return self._load_indexed(tensors, meta, device)
        index = {k: i for i, k in enumerate(self.names)}
        state: dict[int, dict] = {}
        prefix = f"optim.{self.name}."
        for k, v in tensors.items():
            if k.startswith(prefix):
                pname, key = k[len(prefix):].rsplit(".", 1)
                state.setdefault(self._index(index, pname), {})[key] = v if key == "step" else v.to(device)
        for k, v in meta["scalars"].items():
            pname, key = k.rsplit(".", 1)
            state.setdefault(self._index(index, pname), {})[key] = v
        saved = meta["groups"]
        if sorted(saved) != sorted(self.groups):
            raise CheckpointError(f"checkpoint's optimizer groups for {self.name!r} are {sorted(saved)}, this run's "
                                  f"are {sorted(self.groups)}; resume with the train.lr keys it was started with")
        sd = self.opt.state_dict()
        groups = [{**g, **saved[g["group"]], "params": g["params"], "group": g["group"]} for g in sd["param_groups"]]
        self.opt.load_state_dict({"state": state, "param_groups": groups})

    def _index(self, index: dict[str, int], pname: str) -> int:
        if pname not in index:
            raise CheckpointError(f"checkpoint has optimizer state for {self.name}.{pname}, which this run's "
                                  f"{self.name!r} network does not train")
        return index[pname]

    def _load_indexed(self, tensors: dict[str, Tensor], meta: dict, device) -> None:
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith(f"optim.{self.name}."):
                idx, key = k[len(f"optim.{self.name}."):].split(".", 1)
                state.setdefault(int(idx), {})[key] = v.to(device) if key != "step" else v
        for k, v in meta["scalars"].items():
            idx, key = k.split(".", 1)
            state.setdefault(int(idx), {})[key] = v
        groups = [{**g, "group": ""} for g in meta["param_groups"]]
        if len(groups) != 1 or len(self.groups) != 1:
            raise CheckpointError(f"checkpoint's optimizer state for {self.name!r} predates parameter groups; "
                                  "resume it without group keys in train.lr")
        self.opt.load_state_dict({"state": state, "param_groups": groups})
