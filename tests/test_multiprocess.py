"""Two CPU processes (gloo) train to the same weights as one process with the same global batch."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent


def run(cmd, tmp):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_file(str(tmp / "final.safetensors"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCHERS = {
    "torchrun": ["torchrun", "--standalone", "--nproc_per_node", "2"],
    "accelerate": ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no"],
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_two_processes_match_one(tmp_path, launcher):
    one = run([sys.executable, str(HERE / "multiprocess_worker.py"), str(tmp_path / "one")], tmp_path / "one")
    cmd = LAUNCHERS[launcher] + (["--main_process_port", str(free_port())] if launcher == "accelerate" else [])
    exe = str(Path(sys.executable).parent / cmd[0])
    two = run([exe, *cmd[1:], str(HERE / "multiprocess_worker.py"), str(tmp_path / "two")], tmp_path / "two")
    assert one.pop("world").item() == 1 and two.pop("world").item() == 2
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-5, rtol=1e-5), (k, (one[k] - two[k]).abs().max())


def worker(tmp, name, *args, processes=2):
    """Run the worker alone (1) or under torchrun (2); returns the saved weights."""
    out = tmp / name
    cmd = [sys.executable, str(HERE / "multiprocess_worker.py"), str(out), *args]
    if processes == 2:
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2", *cmd[1:]]
    weights = run(cmd, out)
    assert weights.pop("world").item() == processes
    return weights


def assert_same(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=atol), (k, (a[k] - b[k]).abs().max())


@pytest.mark.slow
@pytest.mark.parametrize("shard_teacher", [False, True])
def test_sharded_two_processes_match_one(tmp_path, shard_teacher):
    """FSDP2 on 2 processes: SiD backpropagates the generator's loss through the frozen, sharded fake score."""
    extra = ["--shard-teacher"] if shard_teacher else []
    one = worker(tmp_path, "one", "--what", "sid", *extra, processes=1)
    two = worker(tmp_path, "two", "--what", "sid", "--parallel", "fsdp", *extra)
    assert (tmp_path / "two" / "checkpoints" / "step_00000012" / "shard-00001-of-00002.safetensors").is_file()
    assert_same(one, two)
    # evaluation and export see whole networks on process 0: the generator's EMA and the fake score's weights
    for k in [k for k in two if k.startswith("whole.")]:
        source = k.replace("whole.generator.", "ema.") if k.startswith("whole.generator.") else k[len("whole."):]
        assert torch.equal(two[k], two[source]), k


@pytest.mark.slow
def test_sharded_checkpoint_resumes_on_one_process(tmp_path):
    """A checkpoint written in shards by 2 processes resumes on 1 (replicated or sharded) and continues as the
    uninterrupted run does."""
    one = worker(tmp_path, "one", "--what", "sid", processes=1)
    worker(tmp_path, "two", "--what", "sid", "--parallel", "fsdp")
    half = str(tmp_path / "two" / "checkpoints" / "step_00000006")
    for parallel in ("replicated", "fsdp"):
        resumed = worker(tmp_path, f"resumed_{parallel}", "--what", "sid", "--parallel", parallel, "--resume", half,
                         processes=1)
        assert_same(one, resumed)


@pytest.mark.slow
def test_didi_sharded_matches_replicated(tmp_path):
    """DiDi-Instruct (toy Markov chain, discriminator + policy gradient) trains to the same weights sharded and
    replicated on 2 processes. (Its rollout draws from each process's own torch generator, so no 2-process run
    equals a 1-process one: docs/architecture.md section 7.)"""
    replicated = worker(tmp_path, "replicated", "--what", "didi", "--parallel", "replicated")
    sharded = worker(tmp_path, "sharded", "--what", "didi", "--parallel", "fsdp")
    assert_same(replicated, sharded)


def test_sharded_one_process_matches_replicated(tmp_path):
    """train.parallel = fsdp on one process (a process group of one): the same weights as replicated."""
    assert_same(worker(tmp_path, "replicated", "--what", "sid", processes=1),
                worker(tmp_path, "fsdp", "--what", "sid", "--parallel", "fsdp", processes=1))


def test_a_damaged_shard_is_refused(tmp_path):
    """Each process's shard is in the checkpoint's manifest: one flipped bit, or a shard missing, and the
    checkpoint is refused naming the file."""
    from unidistill.engine import checkpoint as ckpt

    worker(tmp_path, "fsdp", "--what", "sid", "--parallel", "fsdp", processes=1)
    folder = tmp_path / "fsdp" / "checkpoints" / "step_00000012"
    meta = ckpt.load(folder)[1]
    assert meta["shards"]["world"] == 1 and "module.generator.weight" in meta["shards"]["keys"]
    shard = folder / "shard-00000-of-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="shard-00000-of-00001.safetensors is truncated or corrupted"):
        ckpt.load(folder)
    shard.unlink()
    with pytest.raises(ckpt.CheckpointError, match="is missing shard-00000-of-00001.safetensors"):
        ckpt.load(folder)
