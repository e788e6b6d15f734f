"""The one training loop: k auxiliary updates, then one generator update, repeated.

The loop owns reduction, backward, gradient all-reduce across processes, clipping, non-finite
guards, EMA, the learning-rate schedule, mixed precision, checkpoint/resume, logging, progress and
periodic evaluation. What is trained is an `Objective`; the loop never asks which method or
modality it is.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch
from torch import Tensor

from . import checkpoint as ckpt
from . import parallel
from .config import TrainConfig, changed_keys
from .errors import Interrupted, TrainingError
from .logger import RunLogger
from .memory import check_static, free_memory, frozen_networks
from .noise import Noise
from .objective import Objective, Progress
from .optim import ModuleOptimizer
from .parallel import is_dtensor, local, plain
from .precision import LossScale, autocast
from .speedups import compile_forward, enable_activation_checkpointing


class Trainer:
    """Trains an Objective; `fit()` resumes from the run directory's latest checkpoint if any."""

    def __init__(self, objective: Objective, cfg: TrainConfig, out_dir: str | Path,
                 accelerator=None, resume: str | Path | None = None, run_config: dict | None = None,
                 resume_changed: bool = False):
        """`run_config` (the resolved config) is stored in every checkpoint and written to config.yaml once
        resuming succeeded; a resume whose config changes the math is refused unless `resume_changed`."""
        from accelerate import Accelerator

        if "generator" not in objective.modules:
            raise ValueError(f"objective.modules must contain 'generator', has {list(objective.modules)}")
        self.obj, self.cfg, self.out = objective, cfg, Path(out_dir)
        # on a machine without CUDA, "auto" is the CPU: accelerate starts its gloo process group only when told
        # cpu=True (left to guess, it runs every process of `torchrun` as a world of one)
        cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
        self.acc = accelerator or Accelerator(cpu=cpu)
        if cfg.device == "cuda" and self.acc.device.type != "cuda":
            raise ValueError("train.device is cuda but no CUDA device is available; use auto or cpu")
        self.world, self.rank = self.acc.num_processes, self.acc.process_index
        if cfg.batch_size % self.world:
            raise ValueError(f"train.batch_size {cfg.batch_size} does not split over {self.world} processes")
        self.n = cfg.batch_size // self.world
        self.resume_from = resume
        self.run_config, self.resume_changed = run_config, resume_changed
        self._stop: int | None = None  # the signal that asked the run to stop
        torch.manual_seed(cfg.seed + 1000 * self.rank)
        free = free_memory()
        self.noise = Noise(cfg.seed, self.rank, self.world, self.acc.device, max_bytes=free // 4 if free else None)
        # every process starts from rank 0's weights (as DDP does), then holds them whole or sharded
        self.par = parallel.make(cfg.parallel, self.world, self.acc.device)
        objective.to(self.acc.device)
        teachers = objective.teachers if cfg.shard_teacher else {}  # the config allows it with fsdp only
        if cfg.activation_checkpointing:
            nets = {**objective.modules, **objective.teachers}
            if sum(enable_activation_checkpointing(m) for m in nets.values()) == 0 and self.rank == 0:
                print("train.activation_checkpointing: no network of this run has blocks that support it (engine DiT "
                      "blocks, diffusers models); nothing changes", flush=True)
        self.par.prepare(objective.modules, teachers)
        if cfg.compile:  # after sharding, as FSDP2 expects
            for m in (objective.modules["generator"], *objective.teachers.values()):
                compile_forward(m)
        for m in objective.frozen.values():
            m.to(self.acc.device)
        self.gen = objective.modules["generator"]
        self.aux_names = [k for k in objective.modules if k != "generator"]
        check_static(objective.modules, frozen_networks(objective), self.acc.device,
                     shards=self.world if self.par.sharded else 1, shard_frozen=cfg.shard_teacher)
        unknown = sorted(k for k in cfg.lr if k.split(".")[0] not in objective.modules)
        if unknown:
            raise ValueError(f"train.lr names {', '.join(map(repr, unknown))}, which this run does not train; "
                             f"its modules are: {', '.join(objective.modules)}")
        # parameters frozen when the objective hands its modules over (e.g. a discriminator's copied
        # teacher blocks) stay frozen; the rest are switched on and off by phase
        self.opt = {name: ModuleOptimizer(name, m, cfg.lr, cfg.betas, cfg.weight_decay)
                    for name, m in objective.modules.items()}
        self.scales = {name: LossScale() for name in objective.modules} if cfg.mixed_precision == "fp16" else {}
        self._params = {name: o.params for name, o in self.opt.items()}
        self.ema = {k: v.detach().clone() for k, v in self.gen.state_dict().items()}
        self._bind_ema()
        self._requires_grad: dict[str, bool] = {}  # the phase state each module was last set to
        self.step = 0
        self.skipped = {"generator": 0, "aux": 0}
        self.consecutive = {"generator": 0, "aux": 0}

    # ------------------------------------------------------------------ one update
    def _autocast(self):
        return autocast(self.cfg.mixed_precision, self.acc.device)

    def _train_only(self, names: list[str]) -> None:
        """Parameters of `names` require grad; every other trainable module is frozen for this phase."""
        for name in self.obj.modules:
            want = name in names
            if self._requires_grad.get(name) != want:
                for p in self._params[name]:
                    p.requires_grad_(want)
                self._requires_grad[name] = want
                self.par.requires_grad_changed(self.obj.modules[name])

    def _update(self, names: list[str], losses: dict[str, Tensor]) -> tuple[bool, dict[str, Tensor]]:
        """Backward the mean of each per-example loss, all-reduce, clip and step; skip if non-finite."""
        for name in names:
            self.opt[name].zero_grad()
        means = {k: l.float().mean() for k, l in losses.items()}
        total = sum(means.values())
        if self.scales:  # fp16: each module's loss times its own scale (a loss is keyed by its module)
            sum(self.scales[k].scale * m for k, m in means.items()).backward()
        else:
            total.backward()
        params = {name: self._params[name] for name in names}
        if self.scales:
            for name in names:
                self.scales[name].unscale(params[name])
        self.par.reduce_gradients([p for name in names for p in params[name]])
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        norms = {name: plain(torch.nn.utils.clip_grad_norm_(params[name], clip)) for name in names}
        flags = torch.isfinite(torch.stack([*norms.values(), total.detach()])).float()
        if self.world > 1:  # every process takes the same decision
            flags = flags.to(self.acc.device)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MIN)
        finite = bool(flags.min().item())
        if self.scales:  # an overflow halves that module's scale; a step taken counts towards growing it
            for name, ok in zip(names, flags.tolist()):
                if not ok or finite:
                    self.scales[name].update(bool(ok))
        if finite:
            for name in names:
                self.opt[name].step(self._lr_factor())
            self._check_weights(names)
        return finite, norms

    def _check_weights(self, names: list[str]) -> None:
        """After a step: every updated parameter still finite (one max-abs pass, one sync), or stop before
        the EMA or a checkpoint can take the bad values."""
        maxima = torch.stack([max_abs(self._params[name]) for name in names])
        flag = torch.isfinite(maxima).all().float()
        if self.world > 1:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        if not bool(flag.item()):
            bad = [name for name, m in zip(names, maxima) if not torch.isfinite(m)] or names
            raise TrainingError(
                f"the update at step {self.step + 1} made the {', '.join(map(repr, bad))} weights non-finite "
                f"(train.lr {self.cfg.lr} too large?); nothing after step {self.step} was checkpointed: "
                f"{self._last_good_hint()}")

    def _lr_factor(self) -> float:
        """Warm-up and schedule factor on every base learning rate at the current step."""
        s, cfg = self.step, self.cfg
        f = min(1.0, (s + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
        if cfg.schedule == "cosine":
            f *= 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))
        return f

    @property
    def progress(self) -> Progress:
        return Progress(self.step, self.cfg.steps)

    def _guard(self, ok: bool, phase: str) -> None:
        if ok:
            self.consecutive[phase] = 0
            return
        self.skipped[phase] += 1
        self.consecutive[phase] += 1
        if self.consecutive[phase] > self.cfg.max_skipped:
            raise TrainingError(
                f"{self.consecutive[phase]} consecutive non-finite {phase} updates at step {self.step}; "
                "lower the learning rate or check the teacher's outputs (train.max_skipped sets the limit); "
                f"{self._last_good_hint()}")

    def _last_good_hint(self) -> str:
        path = ckpt.latest(self.out / "checkpoints")
        return f"the newest checkpoint is {path}" if path is not None else "no checkpoint was written"

    def train_step(self) -> dict[str, Tensor | float]:
        """k auxiliary updates then one generator update; returns scalars (tensors) to log."""
        row: dict[str, Tensor | float] = {}
        progress = self.progress
        if self.aux_names:
            self._train_only(self.aux_names)
            for _ in range(self.cfg.aux_steps):
                with self._autocast():
                    losses = self.obj.aux_losses(self.noise, self.n, progress)
                if not losses:
                    break
                ok, norms = self._update(list(losses), losses)
                self._guard(ok, "aux")
                row.update({f"loss/{k}": v.detach().float().mean() for k, v in losses.items()})
                row.update({f"grad_norm/{k}": v for k, v in norms.items()})
        self._train_only(["generator"])
        with self._autocast():
            loss, logs = self.obj.generator_loss(self.noise, self.n, progress)
        ok, norms = self._update(["generator"], {"generator": loss})
        self._guard(ok, "generator")
        if ok:
            self._ema_update()
        row["loss/generator"] = loss.detach().float().mean()
        row["grad_norm/generator"] = norms["generator"]
        row.update(logs)
        row["lr/generator"] = self.opt["generator"].base_lr[0] * self._lr_factor()
        row["skipped"] = float(sum(self.skipped.values()))
        return row

    def _bind_ema(self) -> None:
        """Pair each EMA tensor with the live tensor it follows (floating point: lerp; others: copy); in a
        sharded run each process updates its own shard."""
        live = self.gen.state_dict()
        self._ema_float = ([local(self.ema[k]) for k, v in live.items() if v.dtype.is_floating_point],
                           [local(v) for v in live.values() if v.dtype.is_floating_point])
        self._ema_other = [(local(self.ema[k]), local(v)) for k, v in live.items() if not v.dtype.is_floating_point]

    @torch.no_grad()
    def _ema_update(self) -> None:
        torch._foreach_lerp_(self._ema_float[0], self._ema_float[1], 1 - self.cfg.ema_decay)
        for e, v in self._ema_other:
            e.copy_(v)

    @contextlib.contextmanager
    def ema_weights(self):
        """The generator with its EMA weights on the main process, None on the others. Replicated runs load
        them into the generator for the block; sharded runs gather every trained network (the generator's EMA)
        into process 0's whole copies, which stand in for the sharded networks during the block (every process
        must enter: the gathering is collective)."""
        if self.par.sharded:
            for name, m in self.obj.modules.items():
                self.par.gather(name, self.ema if name == "generator" else m.state_dict())
            with self.par.whole(self.obj.modules) as here:
                yield self.gen if here else None
            return
        if not self.acc.is_main_process:
            yield None
            return
        saved = {k: v.detach().clone() for k, v in self.gen.state_dict().items()}
        self.gen.load_state_dict(self.ema)
        try:
            yield self.gen
        finally:
            self.gen.load_state_dict(saved)

    # ------------------------------------------------------------------ state
    def state_tensors(self) -> tuple[dict[str, Tensor], dict]:
        tensors: dict[str, Tensor] = {}
        meta: dict = {"skipped": self.skipped, "world": self.world, "optim": {}}
        for name, m in self.obj.modules.items():
            tensors.update({f"module.{name}.{k}": v for k, v in m.state_dict().items()})
        for name, m in self.obj.frozen.items():
            tensors.update({f"frozen.{name}.{k}": v for k, v in m.state_dict().items()})
        tensors.update({f"ema.{k}": v for k, v in self.ema.items()})
        for name, opt in self.opt.items():
            t, meta["optim"][name] = opt.state()
            tensors.update(t)
        if self.scales:
            meta["loss_scale"] = {name: s.state() for name, s in self.scales.items()}
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.noise"] = self.noise.state_dict()["generator"]
        return tensors, meta

    def load_state(self, tensors: dict[str, Tensor], meta: dict) -> None:
        try:
            self._load_state(self._fit_layout(tensors), meta)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            what = e.args[0] if isinstance(e, KeyError) and e.args else str(e).splitlines()[0]
            raise ckpt.CheckpointError(f"checkpoint at step {meta.get('step')}: {ckpt.TENSORS} or {ckpt.META} is "
                                       f"incomplete or was not written by unidistill (missing or malformed: "
                                       f"{what})") from None

    def _load_state(self, tensors: dict[str, Tensor], meta: dict) -> None:
        held = [("module", n, m) for n, m in self.obj.modules.items()] + [("frozen", n, m) for n, m in
                                                                          self.obj.frozen.items()]
        for kind, name, m in held:
            prefix = f"{kind}.{name}."
            sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            missing = set(m.state_dict()) - set(sd)
            if missing:
                raise ckpt.CheckpointError(f"checkpoint lacks weights for module {name!r}: {sorted(missing)[:3]}")
            try:
                m.load_state_dict(sd)
            except RuntimeError as e:
                first = str(e).strip().splitlines()[-1].strip()
                raise ckpt.CheckpointError(f"checkpoint does not fit this run's {name!r} network: {first}") from None
        self.ema = {k[4:]: v.to(self.acc.device) for k, v in tensors.items() if k.startswith("ema.")}
        self._bind_ema()
        for name, opt in self.opt.items():
            opt.load(tensors, meta["optim"][name], self.acc.device)
        if self.rank == 0:
            torch.set_rng_state(tensors["rng.torch"])
        self.noise.load_state_dict({"generator": tensors["rng.noise"]})
        self.step = int(meta["step"])
        self.skipped = dict(meta["skipped"])
        for name, scale in self.scales.items():  # fp16 runs; a checkpoint from bf16 or fp32 starts the scales anew
            if name in meta.get("loss_scale", {}):
                scale.load(meta["loss_scale"][name])

    def save_checkpoint(self) -> Path | None:
        tensors, meta = self.state_tensors()
        if self.run_config is not None:
            meta["config"] = self.run_config
        shards = {k: v for k, v in tensors.items() if is_dtensor(v)}
        whole = {k: v for k, v in tensors.items() if k not in shards}
        bad = ckpt.non_finite(whole) or ckpt.non_finite({k: local(v) for k, v in shards.items()})
        if self.world > 1:  # every process refuses together
            flag = torch.tensor(float(bad is not None), device=self.acc.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            bad = bad or ("a tensor on another process" if flag.item() else None)
        if bad is not None:  # never on disk: a checkpoint is a promise that resuming from it is safe
            raise TrainingError(f"step {self.step}: {bad} is non-finite; the checkpoint was not written; "
                                f"{self._last_good_hint()}")
        root, main, path = self.out / "checkpoints", self.acc.is_main_process, None
        if not shards:
            if main:
                path = ckpt.save(root, self.step, tensors, meta, keep=self.cfg.keep_checkpoints)
            self.acc.wait_for_everyone()
            return path
        meta["shards"] = {"world": self.world, "keys": {k: list(v.shape) for k, v in shards.items()}}
        if main:
            ckpt.begin(root, self.step)
        self.acc.wait_for_everyone()
        tmp = ckpt.staging(root, self.step)
        ckpt.write_shard(tmp, self.rank, self.world, {k: local(v) for k, v in shards.items()})
        self.acc.wait_for_everyone()
        if main:
            path = ckpt.finish(root, tmp, self.step, whole, meta, keep=self.cfg.keep_checkpoints)
        self.acc.wait_for_everyone()
        return path

    def _fit_layout(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """Whole tensors from a checkpoint, each sharded like the tensor of this run it restores (its module
        parameter for EMA and optimizer moments), so a checkpoint from any number of processes resumes."""
        if not self.par.sharded:
            return tensors
        from torch.distributed.tensor import distribute_tensor

        like = {k: v for k, v in self.state_tensors()[0].items() if is_dtensor(v)}
        out = {}
        for k, v in tensors.items():
            target = like.get(k)
            if target is None and k.startswith("optim."):
                module, rest = k[len("optim."):].split(".", 1)
                target = like.get(f"module.{module}.{rest.rsplit('.', 1)[0]}")
            if target is None and k.startswith("ema."):
                target = like.get(f"module.generator.{k[4:]}")
            if target is not None and tuple(v.shape) == tuple(target.shape):
                v = distribute_tensor(v.to(target.device), target.device_mesh, target.placements, src_data_rank=None)
            out[k] = v
        return out

    def _resume(self) -> bool:
        if self.resume_from is not None:
            tensors, meta = ckpt.load(self.resume_from)
        else:
            found = ckpt.load_latest(self.out / "checkpoints")
            if found is None:
                return False
            tensors, meta = found
        self._check_config(meta)
        self.load_state(tensors, meta)
        if self.acc.is_main_process:
            print(self._resume_note(meta.get("config")), flush=True)
        return True

    def _init_from(self, source: str) -> None:
        """Start from another run's latest checkpoint (or a checkpoint folder): the generator and its EMA from that
        run's EMA weights, every other module the source also has from its weights; optimiser state and the
        step start fresh."""
        path = Path(source)
        found = ckpt.load_latest(path / "checkpoints") if (path / "checkpoints").is_dir() else None
        tensors, meta = found if found is not None else ckpt.load(path)
        tensors = self._fit_layout(tensors)
        loaded = []
        for name, m in self.obj.modules.items():
            prefix = "ema." if name == "generator" else f"module.{name}."
            sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if not sd and name != "generator":
                continue
            try:
                m.load_state_dict(sd)
            except RuntimeError as e:
                first = str(e).strip().splitlines()[-1].strip()
                raise ckpt.CheckpointError(f"train.init_from {source}: its {name!r} weights do not fit this run's "
                                           f"network: {first}") from None
            loaded.append(name)
        self.ema = {k: v.detach().clone() for k, v in self.gen.state_dict().items()}
        self._bind_ema()
        if self.acc.is_main_process:
            print(f"initialised {', '.join(loaded)} from {source} (step {meta.get('step')}; the generator from "
                  "its EMA)", flush=True)

    def _resume_note(self, saved: dict | None) -> str:
        """'resuming RUN from step N', with the keys that changed but not the math (steps, intervals, ...)."""
        note = f"resuming {self.out} from step {self.step}"
        if saved is not None and self.run_config is not None:
            math = changed_keys(saved, self.run_config)
            other = {k: v for k, v in changed_keys(saved, self.run_config, keep=()).items() if k not in math}
            if other:
                note += " (" + "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in other.items()) + ")"
        if self.step >= self.cfg.steps:
            note += f"; train.steps = {self.cfg.steps} is reached: nothing left to train"
        return note

    def _check_config(self, meta: dict) -> None:
        """Refuse a resume whose config changes anything but the run's length, cadence and evaluation."""
        saved = meta.get("config")
        if self.run_config is None or saved is None:
            return
        changed = changed_keys(saved, self.run_config)
        if not changed:
            return
        order = sorted(changed, key=lambda k: (k != "modality", k))  # a change of modality says the most
        what = "; ".join(f"{k}: {changed[k][0]!r} -> {changed[k][1]!r}" for k in order[:4])
        more = f" (and {len(changed) - 4} more)" if len(changed) > 4 else ""
        if not self.resume_changed:
            raise ckpt.CheckpointError(
                f"resuming {self.out} would change what it trains ({what}{more}); use a new --out, or pass "
                "--resume-changed to continue the checkpoint under the new config")
        print(f"resuming under a changed config: {what}{more}", flush=True)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        with self.ema_weights() as g:
            if g is not None:
                with torch.no_grad():
                    g.eval()
                    metrics = self.obj.evaluate(g)
                    self.obj.save_samples(g, self.out, self.step)
                    g.train()
        self.acc.wait_for_everyone()
        return metrics

    # ------------------------------------------------------------------ the loop
    def fit(self, stop_at: int | None = None) -> dict[str, float]:
        """Train to cfg.steps (or stop early at `stop_at`, for tests); returns the final metrics."""
        self.out.mkdir(parents=True, exist_ok=True)
        resumed = self._resume()
        if not resumed:
            if self.cfg.init_from is not None:
                self._init_from(self.cfg.init_from)
            self.obj.start()
        main = self.acc.is_main_process
        if main and self.run_config is not None:  # only now: a refused resume leaves config.yaml as it was
            write_config(self.out / "config.yaml", self.run_config)
        # rows after the checkpoint's step were logged by a run that did not live to checkpoint them
        after = self.step if resumed else None
        logger = RunLogger(self.out / "log.csv", resume=resumed, after=after) if main else None
        eval_log = RunLogger(self.out / "eval.csv", resume=resumed, after=after, tensorboard=False) if main else None
        end = min(self.cfg.steps, stop_at) if stop_at is not None else self.cfg.steps
        bar = None
        if self.cfg.progress and self.acc.is_main_process:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.cfg.steps, initial=self.step, desc=self.obj.name,
                       dynamic_ncols=True)
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        handlers = self._catch_signals()
        try:
            while self.step < end:
                row = self.train_step()
                self.step += 1
                log_now = self.step % self.cfg.log_every == 0
                if log_now:
                    row = {k: float(v) for k, v in row.items()}
                if bar is not None:
                    bar.update(1)
                    if log_now:
                        bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in row.items() if k.startswith("loss/")})
                if logger is not None and log_now:
                    row["time/step_s"] = (time.perf_counter() - t0) / self.cfg.log_every
                    t0 = time.perf_counter()
                    logger.log(self.step, row)
                if self.cfg.eval_every and self.step % self.cfg.eval_every == 0 and self.step < self.cfg.steps:
                    m = self.evaluate()
                    if eval_log is not None and m:
                        eval_log.log(self.step, m)
                if self.step % self.cfg.checkpoint_every == 0 or self.step == end:
                    self.save_checkpoint()
                elif self._stop_requested():
                    self.save_checkpoint()
                if self._stop_requested():
                    raise Interrupted(self._stop, self.step, ckpt.latest(self.out / "checkpoints"))
            if self.step >= self.cfg.steps and self.skipped["generator"] >= self.step:
                raise TrainingError(f"every one of the {self.step} generator updates was non-finite (skipped); "
                                    "no usable weights: lower train.lr or check the teacher's outputs")
            if self.step >= self.cfg.steps:
                metrics = self.evaluate()
                if main:
                    eval_log.log(self.step, metrics)
                    metrics["skipped_steps"] = float(sum(self.skipped.values()))
                    (self.out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
        finally:
            self._restore_signals(handlers)
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()
                eval_log.close()
        return metrics

    # ------------------------------------------------------------------ interrupts
    def _catch_signals(self) -> dict:
        """SIGINT/SIGTERM ask the loop to checkpoint after the current step and stop; a second one stops at
        once (the checkpoint being written stays atomic)."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def ask(signum, frame):
            if self._stop is not None:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            self._stop = signum

        return {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}

    def _restore_signals(self, handlers: dict) -> None:
        for s, h in handlers.items():
            signal.signal(s, h)

    def _stop_requested(self) -> bool:
        """Whether a signal asked to stop, agreed by every process (they stop at the same step)."""
        flag = torch.tensor(float(self._stop or 0))
        if self.world > 1:
            flag = flag.to(self.acc.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self._stop = int(flag.item()) or None
        return self._stop is not None

    def end(self) -> None:
        """Wait for every process, then release the process group (accelerate's end_training);
        tearing down while another rank is still writing can abort gloo."""
        self.acc.wait_for_everyone()
        self.acc.end_training()


def max_abs(tensors) -> Tensor:
    """max |x| over a list of tensors (this process's shards of sharded ones) as one scalar; NaN if any entry is
    NaN, inf if any is infinite."""
    parts = [local(t.detach()) for t in tensors]
    return torch.stack([t.abs().amax() for t in parts if t.numel()] or [parts[0].new_zeros(())]).amax().float()


def write_config(path: Path, data: dict) -> None:
    """The resolved config as YAML, written atomically."""
    import yaml

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
