"""What can end a run besides a bad config (ConfigError) or a bad checkpoint (CheckpointError): each carries
one line for the user. Nothing here imports torch, so the command line can catch them cheaply."""
from __future__ import annotations

import signal


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite updates or weights); nothing bad was checkpointed."""


class RunLocked(RuntimeError):
    """Another process holds the run directory."""


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; the run checkpointed at `step` and can be resumed."""

    def __init__(self, signum: int, step: int, checkpoint):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        super().__init__(f"{name} at step {step}: checkpoint {checkpoint} written; run the same command to resume")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
