"""A small CNN classifier for the 8x8 digits, trained locally on the train split only (no download).

Its 128-d penultimate features define digits-FID (see `digits_eval.py`) and its log p(class | x) is the
differentiable reward of DI++ / DI*. Retrain and overwrite the shipped weights with
`python -m unidistill.modalities.shared.digits_classifier`.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .digits import load_digits

WEIGHTS = Path(__file__).parent / "weights" / "digits_classifier.safetensors"
N_FEATURES = 128
N_CLASSES = 10


class DigitsClassifier(nn.Module):
    """conv 1->32 -> conv 32->64 -> pool to 4x4 -> conv 64->64 -> linear 1024->128 (features) -> linear 128->10."""

    def __init__(self, dropout: float = 0.2):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.GELU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.GELU(),
            nn.AvgPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.GELU(),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(64 * 4 * 4, N_FEATURES), nn.GELU(),
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(N_FEATURES, N_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (B, 128) of images (B, 1, 8, 8) in [-1, 1]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, 10)."""
        return self.head(self.drop(self.features(x)))

    def log_prob(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(y | x) (B,), differentiable in x."""
        return self(x).log_softmax(dim=-1).gather(1, y.long().view(-1, 1)).squeeze(1)


def augment(x: Tensor, g: torch.Generator, noise: float = 0.05) -> Tensor:
    """Random shifts by up to 1 pixel (background-filled) plus small gaussian pixel noise, clamped to [-1, 1]."""
    b = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dy, dx = torch.randint(0, 3, (2, b), generator=g)
    ar = torch.arange(8)
    rows, cols = (dy[:, None] + ar)[:, :, None], (dx[:, None] + ar)[:, None, :]
    shifted = padded[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)
    return (shifted + noise * torch.randn(shifted.shape, generator=g)).clamp(-1, 1)


@torch.no_grad()
def accuracy(clf: DigitsClassifier, split: str = "held_out") -> float:
    """Fraction of a digits split classified correctly (eval mode)."""
    was_training = clf.training
    clf.eval()
    x, y = load_digits(split)
    acc = (clf(x).argmax(dim=1) == y).float().mean().item()
    clf.train(was_training)
    return acc


def train_classifier(steps: int = 3000, seed: int = 0, progress: bool = True, batch: int = 128,
                     lr: float = 2e-3) -> DigitsClassifier:
    """Train on the train split with light augmentation (AdamW, cosine schedule); returns the model in eval mode."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = load_digits("train")
    clf = DigitsClassifier()
    opt = torch.optim.AdamW(clf.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    clf.train()
    bar = tqdm(range(steps), disable=not progress, desc="digits classifier")
    for step in bar:
        i = torch.randint(len(y), (batch,), generator=g)
        loss = F.cross_entropy(clf(augment(x[i], g)), y[i], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return clf.eval()


def load_classifier(path: str | Path | None = None) -> DigitsClassifier:
    """The shipped (or given) classifier weights, in eval mode with requires_grad False."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else WEIGHTS
    if not path.exists():
        cmd = "python -m unidistill.modalities.shared.digits_classifier"
        raise FileNotFoundError(f"no digits classifier at {path}; train it with `{cmd}`")
    clf = DigitsClassifier()
    clf.load_state_dict(load_file(str(path)))
    return clf.eval().requires_grad_(False)


def save_classifier(clf: DigitsClassifier, path: str | Path, metadata: dict[str, str]) -> None:
    """Atomically write the weights (temp file + os.replace) with string metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous() for k, v in clf.state_dict().items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main() -> None:
    """Train, report held-out accuracy and save the weights."""
    p = argparse.ArgumentParser(description="train the digits classifier behind digits-FID and the reward")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=WEIGHTS)
    args = p.parse_args()
    t0 = time.perf_counter()
    clf = train_classifier(args.steps, args.seed)
    seconds = time.perf_counter() - t0
    acc = accuracy(clf, "held_out")
    n_params = sum(q.numel() for q in clf.parameters())
    print(f"params {n_params}, train accuracy {accuracy(clf, 'train'):.4f}, held-out accuracy {acc:.4f}, "
          f"{seconds:.1f} s")
    meta = {"held_out_accuracy": f"{acc:.4f}", "steps": str(args.steps), "seed": str(args.seed)}
    save_classifier(clf, args.out, meta)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
