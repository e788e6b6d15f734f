"""Sampling token sequences from a masked diffusion model (plain or reward-guided) and writing them as text."""
from __future__ import annotations

from pathlib import Path

import torch

from unidistill.engine.masked_sampling import Guidance, SampleStats, guided_sample, sample
from unidistill.engine.process import MaskingProcess


@torch.no_grad()
def sample_ids(model, n: int, steps: int, seed: int = 0, batch: int = 64, guidance: Guidance | None = None,
               discriminator=None, length: int | None = None, progress: str | None = None
               ) -> tuple[torch.Tensor, SampleStats]:
    """n sequences (n, L) from the model's N-step ancestral sampler (no-change cache on) or, with guidance
    and a discriminator, the reward-guided sampler; stats are per sample (NFE and discriminator passes)."""
    if guidance is not None and discriminator is None:
        raise ValueError("the reward-guided sampler needs the run's discriminator")
    process = MaskingProcess(model.mask_id, eps=1e-3)
    length = model.length if length is None else length
    if length > model.length:
        raise ValueError(f"length {length} exceeds the model's maximum of {model.length} tokens")
    g = torch.Generator().manual_seed(seed)
    modules = [m for m in (model, discriminator) if m is not None]
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    from tqdm.auto import tqdm

    xs, stats = [], SampleStats(steps=steps)
    bar = tqdm(total=n, desc=progress, unit="sample", disable=None if progress else True, leave=False)
    for lo in range(0, n, batch):
        k = min(batch, n - lo)
        if guidance is None:
            x, st = sample(model, k, steps, process, length, g)
        else:
            x, st = guided_sample(model, discriminator, k, steps, process, length, guidance, g)
        xs.append(x)
        stats.nfe += st.nfe * k
        for key, v in st.extra.items():
            stats.extra[key] = stats.extra.get(key, 0) + v * k
        bar.update(k)
    bar.close()
    for m, w in zip(modules, was):
        m.train(w)
    stats.nfe /= n
    stats.extra = {key: v / n for key, v in stats.extra.items()}
    return torch.cat(xs), stats


def sample_texts(model, tokenizer, n: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    x, _ = sample_ids(model, n, steps, seed)
    return x, tokenizer.batch_decode(x)


def write_texts(texts: list[str], path: Path, title: str) -> None:
    """One sample per section, separated by rules, written atomically."""
    path = Path(path)
    body = f"# {title}\n\n" + "".join(f"--- sample {i}\n{t}\n\n" for i, t in enumerate(texts))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(body)
    tmp.replace(path)
