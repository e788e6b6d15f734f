"""The training loop: it learns, resumes exactly, survives corrupted checkpoints and skips NaN steps."""
from __future__ import annotations

import json

import pytest
import torch
from tiny import make_objective

from unidistill.engine import checkpoint as ckpt
from unidistill.engine.config import ConfigError, TrainConfig, build
from unidistill.engine.errors import TrainingError
from unidistill.engine.trainer import Trainer


def cfg(**kw):
    base = dict(steps=40, batch_size=64, lr={"generator": 3e-2, "fake": 1e-2}, checkpoint_every=20,
                log_every=5, progress=False, device="cpu", ema_decay=0.9)
    base.update(kw)
    return TrainConfig(**base)


def params(trainer):
    out = {f"{n}.{k}": v.clone() for n, m in trainer.obj.modules.items() for k, v in m.state_dict().items()}
    out.update({f"ema.{k}": v.clone() for k, v in trainer.ema.items()})
    return out


def test_distillation_moves_generator_to_teacher(tmp_path):
    trainer = Trainer(make_objective(), cfg(steps=500, batch_size=128, lr={"generator": 1e-2, "fake": 1e-2}),
                      tmp_path)
    metrics = trainer.fit()
    assert metrics["mean_err"] < 0.12, metrics  # starts at ~1.1
    assert json.loads((tmp_path / "metrics.json").read_text())["mean_err"] == metrics["mean_err"]
    assert (tmp_path / "log.csv").read_text().count("\n") == 500 // 5 + 1


def test_resume_is_exact(tmp_path):
    full = Trainer(make_objective(), cfg(), tmp_path / "full")
    full.fit()
    part = Trainer(make_objective(), cfg(), tmp_path / "part")
    part.fit(stop_at=20)
    resumed = Trainer(make_objective(seed=123), cfg(), tmp_path / "part")  # different init: must be overwritten
    resumed.fit()
    a, b = params(full), params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_corrupted_checkpoint_is_detected_and_previous_kept(tmp_path):
    Trainer(make_objective(), cfg(steps=40, keep_checkpoints=3), tmp_path).fit()
    found = ckpt.checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in found] == ["step_00000020", "step_00000040"]
    state = found[-1] / ckpt.TENSORS
    state.write_bytes(state.read_bytes()[:-100])  # truncate
    expected = "step_00000040.*truncated.*previous good checkpoint .*step_00000020"
    with pytest.raises(ckpt.CheckpointError, match=expected):
        Trainer(make_objective(), cfg(steps=60), tmp_path).fit()
    assert found[0].is_dir()
    t = Trainer(make_objective(), cfg(steps=60), tmp_path, resume=found[0])
    t.fit(stop_at=21)
    assert t.step == 21


def test_interrupted_write_leaves_previous_checkpoint(tmp_path):
    root = tmp_path / "c"
    ckpt.save(root, 1, {"w": torch.ones(3)}, {})
    (root / "step_00000002.tmp").mkdir()  # a kill mid-write leaves only a .tmp folder
    (root / "step_00000002.tmp" / ckpt.TENSORS).write_bytes(b"partial")
    tensors, meta = ckpt.load_latest(root)
    assert meta["step"] == 1 and torch.equal(tensors["w"], torch.ones(3))


def test_non_finite_steps_are_skipped_and_counted(tmp_path):
    obj = make_objective()
    real_loss = obj.generator_loss
    calls = {"n": 0}

    def flaky(noise, n, progress):
        loss, logs = real_loss(noise, n, progress)
        calls["n"] += 1
        return (loss * float("nan"), logs) if calls["n"] % 4 == 0 else (loss, logs)

    obj.generator_loss = flaky
    trainer = Trainer(obj, cfg(steps=20, checkpoint_every=100), tmp_path)
    trainer.fit()
    assert trainer.skipped["generator"] == 5
    for p in trainer.gen.parameters():
        assert torch.isfinite(p).all()


def test_persistent_nan_aborts(tmp_path):
    obj = make_objective()
    real_loss = obj.generator_loss
    obj.generator_loss = lambda noise, n, progress: (real_loss(noise, n, progress)[0] * float("nan"), {})
    with pytest.raises(TrainingError, match="consecutive non-finite generator updates"):
        Trainer(obj, cfg(steps=50, max_skipped=3), tmp_path).fit()


def test_config_errors_name_key_and_choices():
    with pytest.raises(ConfigError, match="unknown config key train.stepz; allowed: steps"):
        build(TrainConfig, {"stepz": 3}, "train")
    with pytest.raises(ConfigError, match="train.steps must be an integer"):
        build(TrainConfig, {"steps": "many"}, "train")
    with pytest.raises(ConfigError, match="train.mixed_precision = 'fp8' is not allowed; choose one of: no, bf16, "
                                          "fp16"):
        build(TrainConfig, {"mixed_precision": "fp8"}, "train")
    # YAML 1.1 reads a bare `no` as false: the choice it spells is still understood
    assert build(TrainConfig, {"mixed_precision": False}, "train").mixed_precision == "no"
    with pytest.raises(ConfigError, match="ema_decay"):
        build(TrainConfig, {"ema_decay": 1.5}, "train")


def test_fdiv_without_discriminator_fails_before_training():
    with pytest.raises(ValueError, match="needs a density-ratio estimator"):
        make_objective("fdiv", f="fkl")


def test_lr_for_an_unknown_module_is_refused(tmp_path):
    with pytest.raises(ValueError, match="train.lr names 'fak', which this run does not train; its modules are: "
                                         "generator, fake"):
        Trainer(make_objective(), cfg(lr={"generator": 1e-3, "fak": 1e-3}), tmp_path)


def test_checkpoint_from_another_network_is_refused(tmp_path):
    Trainer(make_objective(), cfg(steps=2, checkpoint_every=1), tmp_path).fit()
    other = make_objective()
    other.modules["fake"].net[0] = torch.nn.Linear(3, 64)  # a wider fake network
    with pytest.raises(ckpt.CheckpointError, match="does not fit this run's 'fake' network"):
        Trainer(other, cfg(steps=4), tmp_path).fit()


GROUPS = {"generator": 3e-2, "generator.bias": 1e-3, "fake": 1e-2, "fake.net.2": 2e-2}


def test_parameter_groups_have_their_own_rates_and_resume_exactly(tmp_path):
    """train.lr keys module.prefix make named groups; their state is checkpointed by parameter name."""
    t = Trainer(make_objective(), cfg(lr=GROUPS, schedule="cosine"), tmp_path / "probe")
    groups = {g["group"]: g["lr"] for g in t.opt["generator"].opt.param_groups}
    assert groups == {"": 3e-2, "bias": 1e-3}
    assert {g["group"] for g in t.opt["fake"].opt.param_groups} == {"", "net.2"}
    t.train_step()
    assert [g["lr"] for g in t.opt["generator"].opt.param_groups] == [3e-2, 1e-3]  # cosine factor 1 at step 0
    full = Trainer(make_objective(), cfg(lr=GROUPS), tmp_path / "full")
    full.fit()
    part = Trainer(make_objective(), cfg(lr=GROUPS), tmp_path / "part")
    part.fit(stop_at=20)
    tensors, meta = ckpt.load_latest(tmp_path / "part" / "checkpoints")
    assert "optim.generator.bias.exp_avg" in tensors and "optim.fake.net.2.weight.exp_avg_sq" in tensors
    assert set(meta["optim"]["generator"]["groups"]) == {"", "bias"}
    resumed = Trainer(make_objective(seed=7), cfg(lr=GROUPS), tmp_path / "part")
    resumed.fit()
    a, b = params(full), params(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(ckpt.CheckpointError, match="optimizer groups for 'generator' are"):
        Trainer(make_objective(), cfg(lr={"generator": 3e-2, "fake": 1e-2}, steps=60), tmp_path / "part").fit()


def test_groups_change_only_their_own_parameters_rate(tmp_path):
    """A bias group at a tiny rate barely moves the bias while the weight moves as before."""
    obj = make_objective()
    w0, b0 = (p.detach().clone() for p in (obj.modules["generator"].weight, obj.modules["generator"].bias))
    Trainer(obj, cfg(steps=5, lr={"generator": 3e-2, "generator.bias": 1e-9, "fake": 1e-2}), tmp_path).fit()
    assert (obj.modules["generator"].bias - b0).abs().max() < 1e-6
    assert (obj.modules["generator"].weight - w0).abs().max() > 1e-2


def test_a_group_prefix_that_matches_nothing_is_refused(tmp_path):
    with pytest.raises(ValueError, match="train.lr key generator.encoding matches no trainable parameter of "
                                         "'generator'; its top-level parts are: bias, weight"):
        Trainer(make_objective(), cfg(lr={"generator": 1e-3, "generator.encoding": 1e-2}), tmp_path)


def test_checkpoints_written_before_named_groups_still_resume(tmp_path):
    """Checkpoints keyed by optimizer index (before named groups) load into a run without group keys."""
    t = Trainer(make_objective(), cfg(steps=2, checkpoint_every=1), tmp_path)
    t.fit()
    tensors, meta = ckpt.load_latest(tmp_path / "checkpoints")
    legacy_t, legacy_meta = dict(tensors), json.loads(json.dumps(meta))
    for name, opt in t.opt.items():  # rewrite the optimizer state the old way: optim.<module>.<index>.<key>
        sd = opt.opt.state_dict()
        for k in [k for k in legacy_t if k.startswith(f"optim.{name}.")]:
            del legacy_t[k]
        scalars = {}
        for idx, st in sd["state"].items():
            for key, val in st.items():
                if torch.is_tensor(val):
                    legacy_t[f"optim.{name}.{idx}.{key}"] = val
                else:
                    scalars[f"{idx}.{key}"] = val
        groups = [{k: v for k, v in g.items() if k != "group"} for g in sd["param_groups"]]
        legacy_meta["optim"][name] = {"param_groups": groups, "scalars": scalars}
    ckpt.save(tmp_path / "legacy", 2, legacy_t, {k: v for k, v in legacy_meta.items() if k != "step"})
    again = Trainer(make_objective(seed=5), cfg(steps=2), tmp_path / "x", resume=tmp_path / "legacy" / "step_00000002")
    again._resume()
    for name in t.opt:
        for p, q in zip(t.opt[name].params, again.opt[name].params):
            torch.testing.assert_close(t.opt[name].opt.state[p]["exp_avg"], again.opt[name].opt.state[q]["exp_avg"])


def test_run_logger_widens_its_header_for_a_new_key_and_keeps_it_on_resume(tmp_path) -> None:
    import csv

    from unidistill.engine.logger import RunLogger

    path = tmp_path / "eval.csv"
    log = RunLogger(path, tensorboard=False)
    log.log(1, {"a": 1.0})
    log.log(2, {"a": 2.0, "b": 3.0})  # b appears later (an evaluation added after a resume)
    log.log(3, {"b": 4.0})
    rows = list(csv.DictReader(open(path)))
    assert [(r["step"], r["a"], r["b"]) for r in rows] == [("1", "1.0", ""), ("2", "2.0", "3.0"), ("3", "", "4.0")]
    again = RunLogger(path, resume=True, tensorboard=False, after=2)
    again.log(3, {"a": 5.0, "b": 6.0})
    rows = list(csv.DictReader(open(path)))
    assert [(r["step"], r["a"], r["b"]) for r in rows][-1] == ("3", "5.0", "6.0") and len(rows) == 3
