"""Run the tiny distillation under torchrun/accelerate and save the final generator weights.
Usage: torchrun --standalone --nproc_per_node 2 tests/multiprocess_worker.py OUT_DIR"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from safetensors.torch import save_file
from tiny import make_objective

from unidistill.engine.config import TrainConfig
from unidistill.engine.trainer import Trainer

CFG = dict(steps=12, batch_size=64, lr={"generator": 1e-2, "fake": 1e-2}, progress=False, device="cpu",
           checkpoint_every=6, log_every=3)

if __name__ == "__main__":
    out = Path(sys.argv[1])
    import os

    # each process initialises differently on purpose: the trainer must start all from rank 0's weights
    trainer = Trainer(make_objective(seed=100 + int(os.environ.get("RANK", 0))), TrainConfig(**CFG), out)
    trainer.fit()
    if trainer.acc.is_main_process:
        modules = trainer.obj.modules.items()
        weights = {f"{n}.{k}": v.contiguous() for n, m in modules for k, v in m.state_dict().items()}
        weights["world"] = torch.tensor(trainer.world)
        save_file(weights, str(out / "final.safetensors"))
    trainer.end()
