"""Run logging: a CSV file (always) and TensorBoard (when installed)."""
from __future__ import annotations

import csv
import math
from pathlib import Path


class RunLogger:
    """Appends one row per call to a CSV file; the first row fixes the columns (objectives log the
    same keys every step) and a row with a key not seen before widens the header (the file is rewritten
    once, earlier rows left blank there), so no logged number is lost. On resume the existing header is
    kept and rows after step `after` (the checkpoint resumed from) are dropped, so each step is logged
    once, in order."""

    def __init__(self, path: str | Path, resume: bool = False, tensorboard: bool = True, after: int | None = None):
        self.path = Path(path)
        self.columns: list[str] | None = None
        if resume and self.path.is_file():
            with open(self.path, newline="") as f:
                rows = list(csv.reader(f))
            self.columns = rows[0] if rows and rows[0] else None
            if after is not None and self.columns:
                kept = [r for r in rows[1:] if len(r) == len(self.columns) and _step(r[0]) <= after]
                tmp = self.path.with_name(self.path.name + ".tmp")
                with open(tmp, "w", newline="") as f:
                    csv.writer(f).writerows([self.columns, *kept])
                tmp.replace(self.path)
        elif self.path.exists():
            self.path.unlink()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.path.parent / "tensorboard"))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def log(self, step: int, row: dict[str, float]) -> None:
        row = {"step": step, **{k: _num(v) for k, v in row.items()}}
        if self.columns is None:
            self.columns = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        elif any(k not in self.columns for k in row):
            self._widen([k for k in row if k not in self.columns])
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self.columns])
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, float) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def _widen(self, new: list[str]) -> None:
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))[1:]
        self.columns = self.columns + new
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([self.columns, *(r + [""] * len(new) for r in rows)])
        tmp.replace(self.path)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _step(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf  # a torn row from a killed run: dropped


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def read_log(path: str | Path) -> list[dict[str, float]]:
    """Rows of a log.csv as dicts of floats (for plots and tests)."""
    with open(path) as f:
        return [{k: float(v) if v != "" else math.nan for k, v in r.items()} for r in csv.DictReader(f)]
