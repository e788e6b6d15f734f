"""`unidistill teach` for text: a masked diffusion LM (MDLM NELBO) or the judge (causal LM) on a corpus;
the EMA network is exported with its tokenizer as a transformers folder (save_pretrained)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from unidistill.engine.builders import check_options
from unidistill.engine.config import ConfigError
from unidistill.engine.objective import Outputs, sample_path
from unidistill.engine.process import MaskingProcess
from unidistill.engine.teach_masked import MaskedDiffusionObjective, nelbo_bound

from .config import TeachConfig
from .corpus import corpus_blocks
from .io import resolve_folder
from .judge import CausalLMObjective, build_judge, generative_perplexity
from .masked_lm import save_masked_lm
from .mdlm import MDLMConfig, MDLMModel
from .tokenizer import load_tokenizer

log = logging.getLogger(__name__)


def training_record(model, run: Path) -> dict:
    """What the shipped weights cost: parameters, steps, batch and the training loop's seconds (the sum of
    the logged seconds per step times the log interval; evaluations excluded)."""
    import csv

    import yaml

    run = Path(run)
    config = run / "config.yaml"
    train = yaml.safe_load(config.read_text()).get("train", {}) if config.is_file() else {}
    seconds, rows = 0.0, []
    if (run / "log.csv").is_file():
        with open(run / "log.csv") as f:
            rows = list(csv.DictReader(f))
        every = int(train.get("log_every", 1))
        seconds = sum(float(r.get("time/step_s") or 0) for r in rows) * every
    return {"parameters": sum(p.numel() for p in model.parameters()), "steps": train.get("steps"),
            "batch_size": train.get("batch_size"), "seconds": seconds, "threads": torch.get_num_threads(),
            "curve": learning_curve(run / "eval.csv", rows)}


def learning_curve(eval_csv: Path, log_rows: list[dict]) -> list[dict]:
    """Each evaluation's numbers with the mean logged training loss since the previous evaluation."""
    import csv

    if not eval_csv.is_file():
        return []
    with open(eval_csv) as f:
        evals = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    curve, last = [], 0.0
    for e in evals:
        losses = [float(r["loss/generator"]) for r in log_rows
                  if last < float(r["step"]) <= e["step"] and r.get("loss/generator")]
        curve.append({**e, "train_loss": sum(losses) / len(losses) if losses else None})
        last = e["step"]
    return curve


def export_with_record(model, tok, run: Path, name: str) -> Path:
    import json

    folder = save_masked_lm(model, tok, Path(run) / name)
    (folder / "training.json").write_text(json.dumps(training_record(model, run), indent=1))
    return folder


def build_teach(cfg: TeachConfig, out_dir: Path):
    from transformers import GPT2Config

    judge_kind = cfg.kind == "judge"
    check_options(GPT2Config if judge_kind else MDLMConfig, cfg.network, "network",
                  "GPT2Config (the judge)" if judge_kind else "MDLMConfig")  # before the corpus is read
    tok = load_tokenizer(resolve_folder(cfg.tokenizer, "tokenizer"))
    blocks = corpus_blocks(cfg.corpus, tok, cfg.length, "train")
    held = corpus_blocks(cfg.corpus, tok, cfg.length, "held_out")[: cfg.eval.held_out_blocks]
    log.info("corpus %s: %d train and %d held-out blocks of %d tokens", cfg.corpus, len(blocks), len(held), cfg.length)

    def data(noise, n):
        return blocks[noise.randint(len(blocks), n).cpu()].to(noise.device)

    if cfg.kind == "judge":
        judge = build_judge(cfg.network, len(tok), cfg.length, tok.eos_token_id)

        def evaluate_judge(j):
            return {"held_out_ppl": generative_perplexity(j, held, tok.eos_token_id),
                    "train_ppl": generative_perplexity(j, blocks[:len(held)], tok.eos_token_id)}

        return CausalLMObjective(judge, data, tok.eos_token_id, Outputs(
            evaluate=evaluate_judge, export=lambda j, run: export_with_record(j, tok, run, "judge")))

    try:
        config = MDLMConfig(**{"vocab_size": len(tok), "mask_token_id": tok.mask_token_id,
                               "max_position_embeddings": cfg.length, **cfg.network})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key network: {e}") from None
    if config.max_position_embeddings < cfg.length:
        raise ConfigError(f"config key length = {cfg.length} exceeds network.max_position_embeddings = "
                          f"{config.max_position_embeddings}")
    if config.vocab_size != len(tok) or config.mask_token_id != tok.mask_token_id:
        raise ConfigError(f"config key network: vocab_size/mask_token_id must match the tokenizer "
                          f"({len(tok)}, {tok.mask_token_id})")
    model = MDLMModel(config)
    process = MaskingProcess(tok.mask_token_id, eps=1e-3)
    judge_dir = None if cfg.eval.judge == "none" else resolve_folder(cfg.eval.judge, "judge", must_exist=False)
    if judge_dir is not None:
        from .evaluate import check_judge

        check_judge(judge_dir, tok, cfg.length)

    def draw(m):
        from .sampler import sample_texts

        return sample_texts(m, tok, cfg.eval.n_samples, cfg.eval.steps, seed=0)

    def evaluate(m):
        bound = nelbo_bound(m, held, process)
        out = {"held_out_nelbo": bound, "held_out_ppl_bound": float(torch.tensor(bound).exp()),
               # the same bound on as many training blocks: the gap between the two measures memorisation
               "train_nelbo": nelbo_bound(m, blocks[:len(held)], process)}
        if judge_dir is not None:
            from .evaluate import score_samples

            out.update(score_samples(draw(m)[0], judge_dir))
        return out

    def save_texts(m, run, step):
        from .sampler import write_texts

        x, texts = draw(m)
        path = sample_path(run, step, ".txt")
        write_texts(texts, path, f"{cfg.eval.steps}-step teacher samples")
        return [path]

    outputs = Outputs(evaluate=evaluate, save_samples=save_texts,
                      export=lambda m, run: export_with_record(m, tok, run, "teacher"))
    return MaskedDiffusionObjective(model=model, process=process, data=data, outputs=outputs)
