"""Train a tiny distillation under torchrun/accelerate (or alone) and save the final weights.

Usage: torchrun --standalone --nproc_per_node 2 tests/multiprocess_worker.py OUT_DIR
           [--parallel replicated|fsdp] [--what sid|ikl|didi] [--resume CHECKPOINT] [--shard-teacher]
`sid` backpropagates the generator's loss through the frozen fake score (the phase FSDP must keep exact); `didi`
is DiDi-Instruct on the toy Markov chain (examples/toy/chain_didi.yaml)."""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from safetensors.torch import save_file
from tiny import make_objective

from unidistill.engine.config import TrainConfig
from unidistill.engine.objective import Outputs
from unidistill.engine.parallel import plain
from unidistill.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CFG = dict(steps=12, batch_size=64, lr={"generator": 1e-2, "fake": 1e-2}, progress=False, device="cpu",
           checkpoint_every=6, log_every=3, keep_checkpoints=5)


def build(what: str, out: Path, parallel: str, shard_teacher: bool):
    if what == "didi":
        from unidistill.engine.cli import load_run_config

        run = load_run_config(ROOT / "examples" / "toy" / "chain_didi.yaml",
                              ["train.progress=false", "train.device=cpu", "train.steps=6", "train.batch_size=32",
                               "train.checkpoint_every=3", "train.keep_checkpoints=5", f"train.parallel={parallel}"])
        torch.manual_seed(100 + int(os.environ.get("RANK", 0)))
        return run.backend.build(run.cfg, out), run.train
    # each process initialises differently on purpose: the trainer must start all from rank 0's weights
    obj = make_objective(what, seed=100 + int(os.environ.get("RANK", 0)))
    if shard_teacher:  # give the exact teacher a (frozen) parameter, so sharding it has something to shard
        mu = obj.teacher.mu
        del obj.teacher.mu
        obj.teacher.mu = torch.nn.Parameter(mu.clone(), requires_grad=False)
        obj.outputs = Outputs()  # its evaluation reads teacher.mu, which process 0 alone cannot gather
    return obj, TrainConfig(**CFG, parallel=parallel, shard_teacher=shard_teacher and parallel == "fsdp")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--parallel", default="replicated")
    ap.add_argument("--what", default="ikl")
    ap.add_argument("--resume", default=None)
    ap.add_argument("--shard-teacher", action="store_true")
    args = ap.parse_args()
    obj, cfg = build(args.what, args.out, args.parallel, args.shard_teacher)
    trainer = Trainer(obj, cfg, args.out, resume=args.resume)
    trainer.fit()
    modules = trainer.obj.modules.items()
    weights = {f"{n}.{k}": plain(v).contiguous() for n, m in modules for k, v in m.state_dict().items()}
    weights.update({f"ema.{k}": plain(v).contiguous() for k, v in trainer.ema.items()})
    with trainer.ema_weights() as net:  # what evaluation and export see: whole networks, the generator's EMA
        if net is not None:
            weights.update({f"whole.{n}.{k}": v.detach().clone().contiguous() for n, m in modules
                            for k, v in m.state_dict().items()})
            assert not trainer.par.sharded or all(type(v) is torch.Tensor for v in net.state_dict().values())
    if trainer.acc.is_main_process:
        weights["world"] = torch.tensor(trainer.world)
        save_file(weights, str(args.out / "final.safetensors"))
    trainer.end()
