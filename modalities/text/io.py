"""What a text run reads and writes, from local folders only: the shipped tokenizer, teacher and judge
(or a user's transformers folder), a finished run's student and discriminator, and the sampler of
`unidistill sample`."""
from __future__ import annotations

from pathlib import Path

from unidistill.engine.backend import Drawn, Sampler
from unidistill.engine.config import ConfigError

from .config import TextConfig

WEIGHTS = Path(__file__).parent / "weights"
SHIPPED = {"tokenizer": WEIGHTS / "tokenizer", "teacher": WEIGHTS / "pydoc_mdlm", "judge": WEIGHTS / "pydoc_judge"}


def resolve_folder(value: str, what: str, must_exist: bool = True) -> Path | None:
    """"shipped" -> the packaged folder for `what`; anything else is a local folder path. A missing
    shipped folder returns None when must_exist is False (e.g. before the judge has been trained)."""
    if value == "shipped":
        folder = SHIPPED[what]
        if folder.is_dir():
            return folder
        if not must_exist:
            return None
        raise ConfigError(f"config key {what}: the shipped {what} is missing from {folder}; reinstall unidistill")
    folder = Path(value)
    if not folder.is_dir():
        raise ConfigError(f"config key {what}: {value!r} is neither 'shipped' nor an existing folder")
    return folder


def export_student(student, disc, tok, run: Path) -> Path:
    """run/student/ (a masked diffusion LM folder, loadable as a teacher) and run/discriminator.safetensors
    (for the reward-guided sampler)."""
    from safetensors.torch import save_file

    from .masked_lm import save_masked_lm

    folder = save_masked_lm(student, tok, run / "student")
    state = {k: v.detach().contiguous().clone() for k, v in disc.state_dict().items()}
    tmp = run / "discriminator.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(run / "discriminator.safetensors")
    return folder


def trainable_blocks(cfg: dict) -> int:
    """The discriminator's unfrozen teacher blocks recorded in a resolved config (its default is 1)."""
    return int(((cfg.get("distill") or {}).get("discriminator") or {}).get("trainable_blocks", 1))


def load_run(run: str | Path):
    """(student, tokenizer, discriminator or None) from a run directory written by `unidistill distill`."""
    import yaml
    from safetensors.torch import load_file

    from .discriminator import TokenDiscriminator
    from .masked_lm import load_masked_lm

    run = Path(run)
    if not (run / "student").is_dir():
        raise ConfigError(f"run {run} has no student/ folder; it is written when `unidistill distill` finishes")
    student, tok = load_masked_lm(run / "student")
    student.eval().requires_grad_(False)
    disc = None
    if (run / "discriminator.safetensors").is_file():
        cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
        disc = TokenDiscriminator(student, trainable_blocks(cfg or {}))
        disc.load_state_dict(load_file(str(run / "discriminator.safetensors")))
        disc.eval().requires_grad_(False)
    return student, tok, disc


def sampler(cfg: TextConfig) -> Sampler:
    """The student (a copy of the teacher's network) sampled at eval.steps[0], reward-guided with the run's
    discriminator when `guidance` is on; token ids (n, L)."""
    import copy

    from .discriminator import TokenDiscriminator
    from .masked_lm import load_masked_lm
    from .sampler import sample_ids

    teacher, _ = load_masked_lm(resolve_folder(cfg.teacher, "teacher"))
    length = teacher.length if cfg.length is None else cfg.length
    student = copy.deepcopy(teacher)
    modules, guidance = {}, None
    if cfg.guidance.active:
        guidance = cfg.guidance.build()
        options = dict(cfg.distill.discriminator or {})
        modules["discriminator"] = TokenDiscriminator(teacher, **options)

    def draw(s, n: int, seed: int) -> Drawn:
        x, _ = sample_ids(s, n, cfg.eval.steps[0], seed=seed, length=length, guidance=guidance,
                          discriminator=modules.get("discriminator"))
        kind = "reward-guided" if guidance is not None else "plain"
        return Drawn(x.numpy(), about=f"token ids (N, L) of the run's tokenizer, {cfg.eval.steps[0]}-step {kind} "
                                      "sampler; decode with the tokenizer in RUN/student")

    return Sampler(student, draw, modules)


def write_tiny_models(folder: Path, length: int = 16) -> tuple[Path, Path]:
    """A random tiny MDLM teacher and GPT-2 judge with the shipped tokenizer (folder/teacher, folder/judge),
    for smoke tests."""
    import torch

    from .judge import build_judge
    from .masked_lm import save_masked_lm
    from .mdlm import MDLMConfig, MDLMModel
    from .tokenizer import load_tokenizer

    folder = Path(folder)
    if (folder / "teacher").is_dir() and (folder / "judge").is_dir():
        return folder / "teacher", folder / "judge"
    tok = load_tokenizer(SHIPPED["tokenizer"])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MDLMModel(MDLMConfig(vocab_size=len(tok), mask_token_id=tok.mask_token_id,
                                     max_position_embeddings=length, hidden_size=32, num_layers=2, num_heads=2))
        torch.nn.init.normal_(model.head.linear.weight, std=0.1)
        judge = build_judge({"n_embd": 16, "n_layer": 1, "n_head": 2}, len(tok), length, tok.eos_token_id)
    return save_masked_lm(model, tok, folder / "teacher"), save_masked_lm(judge, tok, folder / "judge")
