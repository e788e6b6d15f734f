"""benchmarks/overhead.py --sharded: replicated vs fsdp on 2 CPU processes (torchrun), alternating blocks."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sharded_overhead_writes_both_medians(tmp_path):
    out = tmp_path / "x.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "--sharded", "--iters", "2", "--rounds", "2",
           "--config", str(ROOT / "examples" / "toy" / "ring8_sid.yaml"), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    rep, sh = result["replicated_s"], result["sharded_s"]
    for v in (rep, sh):
        assert math.isfinite(v) and v > 0
    assert result["ratio"] == pytest.approx(sh / rep, rel=1e-12)
    assert result["processes"] == 2 and result["config"].endswith("ring8_sid.yaml")
    assert len(result["replicated_s_all"]) == len(result["sharded_s_all"]) == 2
