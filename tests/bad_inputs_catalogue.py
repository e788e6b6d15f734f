"""A catalogue of bad inputs to the `unidistill` command line, one dict per case, across the five backends
(toy_gmm, toy_markov, image, text, pde) and the CLI itself.

Each case:
  id        short unique string
  backend   the modality whose config the case runs ("cli" when no backend is reached)
  args      the command-line arguments after `unidistill`
  files     optional {relative path: text} written under {tmp} before the run (configs, corpora, plain files)
  setup     optional {"description": ..., "function": name}: call `globals()[name](tmp, paths)` after the files
            are written (helpers below: read-only folders, damaged teacher folders, finished runs with damaged
            checkpoints, ...)
  expect    a substring a good one-line error message must contain (the key, option, value or file it is about)
  timeout   optional seconds after which the run counts as hanging (cases that loop or train forever today)
  note      optional remark (doubts about legitimacy, machine dependence)

Placeholders, replaced by plain string replacement (not str.format: the YAML holds braces) in args and in
file contents: {tmp} (a fresh temp dir, also the working directory), {teacher_image} (a tiny class-
conditional EDM digits teacher folder, tests/image_fixtures.tiny_digits_teacher), {teacher_text} (a tiny MDLM
folder, tests/text_fixtures.tiny_mdlm), {judge_text} (tests/text_fixtures.tiny_judge) and {teacher_pde}
(the `teacher` folder of tests/pde_fixtures.tiny_pde_teacher; its dataset is the sibling folder
{teacher_pde}/../data). `paths` given to setup functions maps the same names, without braces, to paths.

A good rejection: exit code 2, exactly one stderr line `unidistill: error: ...` containing `expect`, and no
checkpoint or log.csv row written (tests/test_bad_inputs.py runs every case). Before the reliability work
(commit c76ae7f) 279 of the 414 cases catalogued then were refused that way; 57 were accepted, 25 ended in a traceback,
6 failed only after training and 47 gave a message that named no key.

Nothing heavy is imported at module import time; setup helpers import torch/diffusers/numpy when called.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# ------------------------------------------------------------------ tiny base configs (train: 2 steps, batch 4)
TRAIN = "train: {steps: 2, batch_size: 4, progress: false, log_every: 1}\n"

TOY = """modality: toy_gmm
mixture:
  ring: {modes: 4, radius: 2.0, std: 0.3}
generator: {hidden: 16, depth: 2}
distill:
  fake: {hidden: 16, depth: 2}
eval: {n_samples: 200}
""" + TRAIN

TOY_FDIV = """modality: toy_gmm
mixture:
  ring: {modes: 4, radius: 2.0, std: 0.3}
generator: {hidden: 16, depth: 2}
distill:
  divergence: {name: fdiv, f: js}
  fake: {hidden: 16, depth: 2}
  discriminator: {hidden: 16, depth: 2}
  real: data
eval: {n_samples: 200}
""" + TRAIN

MARKOV = """modality: toy_markov
chain: {init: [0.6, 0.4], transition: [[0.9, 0.1], [0.3, 0.7]], length: 3}
steps: 2
hidden: 16
warm_start_steps: 2
train: {steps: 2, batch_size: 8, progress: false, log_every: 1}
"""

IMAGE = """modality: image
teacher: {teacher_image}
real_pool: 16
eval: {n_samples: 20}
""" + TRAIN

IMAGE_FDIV = """modality: image
teacher: {teacher_image}
distill:
  divergence: {name: fdiv, f: js}
  discriminator: {width: 8}
  real: teacher
real_pool: 16
eval: {n_samples: 20}
""" + TRAIN

IMAGE_TEACH = """modality: image
data: digits
network:
  sample_size: 8
  in_channels: 1
  out_channels: 1
  block_out_channels: [8, 16]
  layers_per_block: 1
  down_block_types: [DownBlock2D, AttnDownBlock2D]
  up_block_types: [AttnUpBlock2D, UpBlock2D]
  norm_num_groups: 4
  num_class_embeds: 11
scheduler: {_class_name: EDMEulerScheduler, sigma_min: 0.002, sigma_max: 80.0, sigma_data: 0.75,
            prediction_type: epsilon}
eval: {n_samples: 20, steps: 2}
""" + TRAIN

TEXT = """modality: text
teacher: {teacher_text}
teacher_pool: 8
teacher_pool_steps: 4
eval: {n_samples: 4, steps: [4], judge: {judge_text}}
""" + TRAIN

TEXT_CORPUS = """modality: text
teacher: {teacher_text}
corpus: {tmp}/corpus.txt
distill: {real: corpus}
eval: {n_samples: 4, steps: [4], judge: {judge_text}}
""" + TRAIN

TEXT_TEACH = """modality: text
kind: mdlm
corpus: pydoc
tokenizer: shipped
length: 16
network: {hidden_size: 32, num_layers: 1, num_heads: 2}
eval: {n_samples: 4, steps: 4, held_out_blocks: 8, judge: none}
""" + TRAIN

PDE = """modality: pde
teacher: {teacher_pde}
eval: {n_samples: 4}
""" + TRAIN

PDE_TEACH = """modality: pde
data: {teacher_pde}/../data
network:
  sample_size: 16
  in_channels: 2
  out_channels: 2
  block_out_channels: [8, 16, 16]
  layers_per_block: 1
  down_block_types: [DownBlock2D, DownBlock2D, AttnDownBlock2D]
  up_block_types: [AttnUpBlock2D, UpBlock2D, UpBlock2D]
  norm_num_groups: 4
eval: {n_samples: 4, steps: 2}
""" + TRAIN

BASES = {"toy_gmm": TOY, "toy_fdiv": TOY_FDIV, "toy_markov": MARKOV, "image": IMAGE, "image_fdiv": IMAGE_FDIV,
         "image_teach": IMAGE_TEACH, "text": TEXT, "text_corpus": TEXT_CORPUS, "text_teach": TEXT_TEACH,
         "pde": PDE, "pde_teach": PDE_TEACH}
BACKEND_OF = {"toy_fdiv": "toy_gmm", "image_fdiv": "image", "image_teach": "image", "text_corpus": "text",
              "text_teach": "text", "pde_teach": "pde"}

EDM_SCHEDULER = json.dumps({"_class_name": "EDMEulerScheduler", "sigma_min": 0.002, "sigma_max": 80.0,
                            "sigma_data": 0.75, "prediction_type": "epsilon"})


def _case(id, base, sets=(), expect="", *, command=None, files=None, extra=(), setup=None, note=None,
          timeout=None, out="{tmp}/run", config="{tmp}/cfg.yaml"):
    """A `distill` (or `teach`) case on BASES[base] with --set overrides."""
    command = command or ("teach" if base.endswith("_teach") else "distill")
    args = [command, config]
    if out is not None:
        args += ["--out", out]
    for s in sets:
        args += ["--set", s]
    args += list(extra)
    case = {"id": id, "backend": BACKEND_OF.get(base, base), "args": args,
            "files": {"cfg.yaml": BASES[base], **(files or {})}, "expect": expect}
    if setup:
        case["setup"] = {"description": setup[1], "function": setup[0]}
    if note:
        case["note"] = note
    if timeout:
        case["timeout"] = timeout
    return case


def _raw(id, backend, args, expect, *, files=None, setup=None, note=None, timeout=None):
    """A case with explicit arguments."""
    case = {"id": id, "backend": backend, "args": list(args), "expect": expect}
    if files:
        case["files"] = files
    if setup:
        case["setup"] = {"description": setup[1], "function": setup[0]}
    if note:
        case["note"] = note
    if timeout:
        case["timeout"] = timeout
    return case


DONE = ("setup_finished_toy_run", "a finished 2-step toy_gmm run in {tmp}/done (checkpoints/step_00000002)")
STEP = "{tmp}/done/checkpoints/step_00000002"
SAMPLE = ["sample", "{tmp}/done", "--n", "5", "--out", "{tmp}/s.npy"]

CASES: list[dict] = [
    # ============================================================== CLI: config files
    _raw("cli_missing_config", "cli", ["distill", "{tmp}/nope.yaml", "--out", "{tmp}/run"], "nope.yaml"),
    _raw("cli_config_is_directory", "cli", ["distill", "{tmp}/cfgdir", "--out", "{tmp}/run"], "cfgdir",
         files={"cfgdir/keep.txt": ""}),
    _raw("cli_empty_config", "cli", ["distill", "{tmp}/cfg.yaml", "--out", "{tmp}/run"], "cfg.yaml",
         files={"cfg.yaml": ""}),
    _raw("cli_comment_only_config", "cli", ["distill", "{tmp}/cfg.yaml", "--out", "{tmp}/run"], "cfg.yaml",
         files={"cfg.yaml": "# nothing here\n"}),
    _raw("cli_config_is_list", "cli", ["distill", "{tmp}/cfg.yaml", "--out", "{tmp}/run"], "cfg.yaml",
         files={"cfg.yaml": "- modality\n- toy_gmm\n"}),
    _raw("cli_config_is_scalar", "cli", ["distill", "{tmp}/cfg.yaml", "--out", "{tmp}/run"], "cfg.yaml",
         files={"cfg.yaml": "toy_gmm\n"}),
    _raw("cli_config_invalid_yaml", "cli", ["distill", "{tmp}/cfg.yaml", "--out", "{tmp}/run"], "cfg.yaml",
         files={"cfg.yaml": "modality: [toy_gmm\n"}),
    _raw("cli_config_tab_indent", "cli", ["distill", "{tmp}/cfg.yaml", "--out", "{tmp}/run"], "cfg.yaml",
         files={"cfg.yaml": "modality: toy_gmm\ntrain:\n\tsteps: 2\n"}),
    _raw("cli_config_nul_bytes", "cli", ["distill", "{tmp}/cfg.yaml", "--out", "{tmp}/run"], "cfg.yaml",
         files={"cfg.yaml": "modality: toy_gmm\n\x00\x01\n"}),
    _raw("cli_duplicate_top_key", "toy_gmm", ["distill", "{tmp}/cfg.yaml", "--out", "{tmp}/run"], "modality",
         files={"cfg.yaml": TOY + "modality: toy_markov\n"}),
    _raw("cli_duplicate_nested_key", "toy_gmm", ["distill", "{tmp}/cfg.yaml", "--out", "{tmp}/run"], "steps",
         files={"cfg.yaml": TOY.replace(TRAIN, "train: {steps: 2, batch_size: 4, progress: false, steps: 3}\n")}),
    _raw("cli_missing_modality", "cli", ["distill", "{tmp}/cfg.yaml", "--out", "{tmp}/run"], "modality",
         files={"cfg.yaml": TOY.replace("modality: toy_gmm\n", "")}),
    _case("cli_modality_unknown", "toy_gmm", ["modality=toy_gmmm"], "toy_gmmm"),
    _case("cli_modality_list", "toy_gmm", ["modality=[toy_gmm]"], "modality"),
    _case("cli_modality_number", "toy_gmm", ["modality=3"], "modality"),
    _case("cli_modality_null", "toy_gmm", ["modality=null"], "modality"),
    _case("cli_modality_mapping", "toy_gmm", ["modality={name: toy_gmm}"], "modality"),
    _case("cli_modality_missing_package", "toy_gmm", ["modality=no_such_pkg_xyz:Backend"], "no_such_pkg_xyz"),
    _case("cli_modality_not_a_backend", "toy_gmm", ["modality=json:loads"], "json:loads"),
    _case("cli_modality_missing_attribute", "toy_gmm", ["modality=json:NoSuchBackend"], "NoSuchBackend"),
    _case("cli_set_without_equals", "toy_gmm", ["train.steps"], "train.steps"),
    _case("cli_set_into_scalar", "toy_gmm", ["train.steps.x=1"], "train.steps"),
    _case("cli_set_unparsable_value", "toy_gmm", ["train.lr={generator: ["], "train.lr"),
    _case("cli_set_empty_key", "toy_gmm", ["=3"], "--set"),
    _case("cli_unknown_top_section_capitalised", "toy_gmm", ["Train.steps=2"], "Train"),
    _case("cli_teach_on_exact_toy", "toy_gmm", command="teach", expect="toy_gmm"),
    _case("cli_teach_on_exact_markov", "toy_markov", command="teach", expect="toy_markov"),
    # ============================================================== CLI: --out
    _case("cli_out_is_a_file", "toy_gmm", out="{tmp}/not_a_dir.txt", expect="not_a_dir.txt",
          files={"not_a_dir.txt": "a plain file\n"}),
    _case("cli_out_under_a_file", "toy_gmm", out="{tmp}/not_a_dir.txt/run", expect="not_a_dir.txt",
          files={"not_a_dir.txt": "a plain file\n"}),
    _case("cli_out_in_readonly_dir", "toy_gmm", out="{tmp}/readonly_dir/run", expect="readonly_dir",
          setup=("setup_readonly_dir", "{tmp}/readonly_dir with mode 555 (as root the mode does not stop writes: "
                                       "run as an unprivileged user or skip)")),
    _case("cli_out_is_readonly_dir", "toy_gmm", out="{tmp}/readonly_dir", expect="readonly_dir",
          setup=("setup_readonly_dir", "{tmp}/readonly_dir with mode 555 (as root the mode does not stop writes: "
                                       "run as an unprivileged user or skip)")),
    # ============================================================== CLI: --resume and re-runs
    _case("ckpt_resume_missing_folder", "toy_gmm", extra=["--resume", "{tmp}/no_such_ckpt"], expect="no_such_ckpt"),
    _case("ckpt_resume_empty_folder", "toy_gmm", extra=["--resume", "{tmp}/empty_ckpt"], expect="empty_ckpt",
          files={"empty_ckpt/keep.txt": ""}),
    _case("ckpt_resume_is_a_file", "toy_gmm", extra=["--resume", "{tmp}/not_a_dir.txt"], expect="not_a_dir.txt",
          files={"not_a_dir.txt": "a plain file\n"}),
    _case("ckpt_resume_run_dir_not_step", "toy_gmm", extra=["--resume", "{tmp}/done"], expect="step_", setup=DONE,
          note="a run directory instead of its checkpoints/step_N folder: the message should point at step_ folders"),
    _case("ckpt_resume_corrupt_manifest", "toy_gmm", extra=["--resume", STEP], expect="manifest.json",
          setup=("setup_corrupt_manifest", DONE[1] + "; its manifest.json replaced by non-JSON")),
    _case("ckpt_resume_missing_manifest", "toy_gmm", extra=["--resume", STEP], expect="manifest.json",
          setup=("setup_missing_manifest", DONE[1] + "; its manifest.json deleted")),
    _case("ckpt_resume_truncated_state", "toy_gmm", extra=["--resume", STEP], expect="state.safetensors",
          setup=("setup_truncated_state", DONE[1] + "; state.safetensors truncated to half")),
    _case("ckpt_resume_state_rewritten_manifest", "toy_gmm", extra=["--resume", STEP], expect="state.safetensors",
          setup=("setup_garbage_state_rehashed", DONE[1] + "; state.safetensors replaced by garbage and the "
                                                        "manifest rewritten to match")),
    _case("ckpt_resume_truncated_state_rehashed", "toy_gmm", extra=["--resume", STEP], expect="state.safetensors",
          setup=("setup_truncated_state_rehashed", DONE[1] + "; state.safetensors truncated and the manifest "
                                                            "rewritten to match")),
    _case("ckpt_resume_meta_not_json_rehashed", "toy_gmm", extra=["--resume", STEP], expect="meta.json",
          setup=("setup_meta_not_json_rehashed", DONE[1] + "; meta.json replaced by '{' and the manifest rewritten")),
    _case("ckpt_resume_meta_empty_rehashed", "toy_gmm", extra=["--resume", STEP], expect="meta.json",
          setup=("setup_meta_empty_rehashed", DONE[1] + "; meta.json replaced by {} and the manifest rewritten")),
    _case("ckpt_resume_meta_bad_step_rehashed", "toy_gmm", extra=["--resume", STEP], expect="meta.json",
          setup=("setup_meta_bad_step_rehashed", DONE[1] + "; meta.json step = 'abc', manifest rewritten")),
    _case("ckpt_resume_state_missing_tensor_rehashed", "toy_gmm", extra=["--resume", STEP], expect="state.safetensors",
          setup=("setup_state_missing_rng_rehashed", DONE[1] + "; tensor rng.torch dropped from state.safetensors, "
                                                              "manifest rewritten")),
    _case("ckpt_resume_into_other_modality", "toy_markov", extra=["--resume", STEP], expect="modality", setup=DONE),
    _case("ckpt_resume_into_other_width", "toy_gmm", ["generator.hidden=32"], extra=["--resume", STEP],
          expect="generator", setup=DONE),
    _case("ckpt_rerun_latest_points_nowhere", "toy_gmm", out="{tmp}/done", expect="step_99999999",
          setup=("setup_latest_points_nowhere", DONE[1] + "; checkpoints/latest rewritten to step_99999999"),
          sets=["train.steps=4"]),
    _case("ckpt_rerun_newest_truncated", "toy_gmm", out="{tmp}/done2", expect="step_00000001",
          setup=("setup_two_checkpoints_newest_truncated", "a 2-step toy_gmm run in {tmp}/done2 with checkpoints at "
                                                           "steps 1 and 2; step 2's state truncated"),
          sets=["train.steps=4", "train.checkpoint_every=1"]),
    # ============================================================== CLI: sample
    _raw("sample_not_a_run_dir", "cli", ["sample", "{tmp}", "--n", "5", "--out", "{tmp}/s.npy"], "config.yaml"),
    _raw("sample_missing_dir", "cli", ["sample", "{tmp}/no_such_run", "--n", "5", "--out", "{tmp}/s.npy"],
         "no_such_run"),
    _raw("sample_run_without_checkpoint", "toy_gmm", ["sample", "{tmp}/run", "--n", "5", "--out", "{tmp}/s.npy"],
         "checkpoint", files={"run/config.yaml": TOY}),
    _raw("sample_n_zero", "toy_gmm", ["sample", "{tmp}/done", "--n", "0", "--out", "{tmp}/s.npy"], "--n", setup=DONE),
    _raw("sample_n_negative", "toy_gmm", ["sample", "{tmp}/done", "--n", "-3", "--out", "{tmp}/s.npy"], "--n",
         setup=DONE),
    _raw("sample_n_float", "toy_gmm", ["sample", "{tmp}/done", "--n", "2.5", "--out", "{tmp}/s.npy"], "--n",
         setup=DONE),
    _raw("sample_n_text", "toy_gmm", ["sample", "{tmp}/done", "--n", "many", "--out", "{tmp}/s.npy"], "--n",
         setup=DONE),
    _raw("sample_seed_overflow", "toy_gmm", SAMPLE + ["--seed", "99999999999999999999999"], "--seed", setup=DONE),
    _raw("sample_out_in_missing_dir", "toy_gmm", ["sample", "{tmp}/done", "--n", "5", "--out", "{tmp}/no_dir/s.npy"],
         "no_dir", setup=DONE),
    _raw("sample_out_under_a_file", "toy_gmm",
         ["sample", "{tmp}/done", "--n", "5", "--out", "{tmp}/not_a_dir.txt/s.npy"], "not_a_dir.txt", setup=DONE,
         files={"not_a_dir.txt": "a plain file\n"}),
    _raw("sample_out_is_a_directory", "toy_gmm", ["sample", "{tmp}/done", "--n", "5", "--out", "{tmp}/outdir"],
         "outdir", setup=DONE, files={"outdir/keep.txt": ""}),
    _raw("sample_truncated_checkpoint", "toy_gmm", SAMPLE, "state.safetensors",
         setup=("setup_truncated_state", DONE[1] + "; state.safetensors truncated to half")),
    _raw("sample_config_changed_width", "toy_gmm", SAMPLE, "generator",
         setup=("setup_run_config_wider", DONE[1] + "; its config.yaml edited to generator.hidden 32")),
    _raw("sample_config_not_yaml", "toy_gmm", SAMPLE, "config.yaml",
         setup=("setup_run_config_garbage", DONE[1] + "; its config.yaml replaced by invalid YAML")),
    _raw("sample_config_unknown_key", "toy_gmm", SAMPLE, "bogus",
         setup=("setup_run_config_unknown_key", DONE[1] + "; 'bogus: 1' appended to its config.yaml")),
    _raw("sample_config_empty", "toy_gmm", SAMPLE, "config.yaml",
         setup=("setup_run_config_empty", DONE[1] + "; its config.yaml emptied")),

    # ============================================================== toy_gmm: keys and types
    _case("toy_unknown_top_key", "toy_gmm", ["latentdim=4"], "latentdim"),
    _case("toy_unknown_train_key", "toy_gmm", ["train.stepz=3"], "train.stepz"),
    _case("toy_unknown_generator_key", "toy_gmm", ["generator.width=16"], "generator.width"),
    _case("toy_unknown_eval_key", "toy_gmm", ["eval.samples=10"], "eval.samples"),
    _case("toy_unknown_distill_key", "toy_gmm", ["distill.fakee={hidden: 4}"], "distill.fakee"),
    _case("toy_unknown_fake_option", "toy_gmm", ["distill.fake.width=4"], "distill.fake.width"),
    _case("toy_unknown_divergence_option", "toy_gmm", ["distill.divergence.alfa=1"], "alfa"),
    _case("toy_unknown_time_sampler_option", "toy_gmm", ["distill.time_sampler.pmean=0"], "pmean"),
    _case("toy_unknown_process_option", "toy_gmm", ["process.sigma_mx=80"], "sigma_mx"),
    _case("toy_unknown_mixture_key", "toy_gmm", ["mixture.ring.radiuss=2"], "radiuss"),
    _case("toy_mixture_two_forms", "toy_gmm", ["mixture.means=[[0.0, 0.0]]"], "mixture"),
    _case("toy_misplaced_divergence", "toy_gmm", ["divergence={name: sim}"], "distill.divergence"),
    _case("toy_steps_string", "toy_gmm", ["train.steps=abc"], "train.steps"),
    _case("toy_lr_number_not_mapping", "toy_gmm", ["train.lr=0.001"], "train.lr"),
    _case("toy_lr_list", "toy_gmm", ["train.lr=[0.001]"], "train.lr"),
    _case("toy_lr_value_string", "toy_gmm", ["train.lr.generator=fast"], "train.lr.generator"),
    _case("toy_betas_number", "toy_gmm", ["train.betas=0.9"], "train.betas"),
    _case("toy_betas_mapping", "toy_gmm", ["train.betas={a: 0.9}"], "train.betas"),
    _case("toy_progress_string", "toy_gmm", ["train.progress=maybe"], "train.progress"),
    _case("toy_schedule_unknown", "toy_gmm", ["train.schedule=linear"], "train.schedule"),
    _case("toy_mixed_precision_fp8", "toy_gmm", ["train.mixed_precision=fp8"], "train.mixed_precision"),
    _case("toy_parallel_unknown", "toy_gmm", ["train.parallel=ddp"], "train.parallel"),
    _case("toy_shard_teacher_replicated", "toy_gmm", ["train.shard_teacher=true"], "train.shard_teacher"),
    _case("toy_device_gpu", "toy_gmm", ["train.device=gpu"], "train.device"),
    _case("toy_device_cuda_without_gpu", "toy_gmm", ["train.device=cuda"], "train.device",
          note="invalid only on a machine without CUDA (this one)"),
    _case("toy_train_list", "toy_gmm", ["train=[1, 2]"], "train"),
    _case("toy_generator_list", "toy_gmm", ["generator=[16, 2]"], "generator"),
    _case("toy_eval_number", "toy_gmm", ["eval=5"], "eval"),
    _case("toy_distill_string", "toy_gmm", ["distill=sim"], "distill"),
    _case("toy_divergence_list", "toy_gmm", ["distill.divergence=[sim]"], "distill.divergence"),
    _case("toy_divergence_name_list", "toy_gmm", ["distill.divergence.name=[sim]"], "distill.divergence.name"),
    _case("toy_divergence_name_number", "toy_gmm", ["distill.divergence.name=3"], "distill.divergence.name"),
    _case("toy_divergence_name_null", "toy_gmm", ["distill.divergence.name=null"], "distill.divergence"),
    _case("toy_divergence_name_mapping", "toy_gmm", ["distill.divergence.name={a: 1}"], "distill.divergence.name"),
    _case("toy_divergence_name_unknown", "toy_gmm", ["distill.divergence.name=kl"], "distill.divergence.name"),
    _case("toy_weighting_list", "toy_gmm", ["distill.divergence.weighting=[sigma2]"], "weighting"),
    _case("toy_weighting_unknown", "toy_gmm", ["distill.divergence.weighting=sigma3"], "weighting"),
    _case("toy_time_sampler_name_list", "toy_gmm", ["distill.time_sampler.name=[lognormal]"],
          "distill.time_sampler.name"),
    _case("toy_time_sampler_unknown", "toy_gmm", ["distill.time_sampler.name=gaussian"], "distill.time_sampler.name"),
    _case("toy_aux_time_sampler_number", "toy_gmm", ["distill.aux_time_sampler=5"], "distill.aux_time_sampler"),
    _case("toy_process_name_list", "toy_gmm", ["process.name=[ve]"], "process.name"),
    _case("toy_real_list", "toy_gmm", ["distill.real=[data]"], "distill.real"),
    _case("toy_fake_list", "toy_gmm", ["distill.fake=[16, 2]"], "distill.fake"),
    _case("toy_mixture_string", "toy_gmm", ["mixture=ring"], "mixture"),
    _case("toy_mixture_weights_string", "toy_gmm", ["mixture.ring.weights=uniform"], "weights"),
    _case("toy_mixture_modes_float", "toy_gmm", ["mixture.ring.modes=2.5"], "modes"),
    _case("toy_fdiv_f_unknown", "toy_fdiv", ["distill.divergence.f=kl"], "'kl'"),
    _case("toy_fdiv_f_list", "toy_fdiv", ["distill.divergence.f=[js]"], "['js']"),
    _case("toy_fdiv_normalise_h_string", "toy_fdiv", ["distill.divergence.normalise_h='false'"], "normalise_h",
          note="the string 'false' is truthy: normalisation is switched ON"),
    _case("toy_fdiv_discriminator_list", "toy_fdiv", ["distill.discriminator=[16, 2]"], "distill.discriminator"),
    # ============================================================== toy_gmm: numeric ranges of the recipe
    _case("toy_sid_alpha_nan", "toy_gmm", ["distill.divergence.alpha=.nan"], "alpha"),
    _case("toy_sid_alpha_inf", "toy_gmm", ["distill.divergence.alpha=.inf"], "alpha"),
    _case("toy_sid_alpha_string", "toy_gmm", ["distill.divergence.alpha=high"], "alpha"),
    _case("toy_sim_c_negative", "toy_gmm", ["distill.divergence={name: sim, c: -1.0}"], "divergence.c"),
    _case("toy_sim_c_nan", "toy_gmm", ["distill.divergence={name: sim, c: .nan}"], "divergence.c"),
    _case("toy_sim_c_zero", "toy_gmm", ["distill.divergence={name: sim, c: 0.0}"], "divergence.c",
          note="doubtful: c = 0 turns pseudo-Huber into the plain norm (gradient undefined at 0); SIM needs c > 0"),
    _case("toy_sim_c_string", "toy_gmm", ["distill.divergence={name: sim, c: one}"], "divergence.c"),
    _case("toy_fdiv_log_ratio_clip_negative", "toy_fdiv", ["distill.divergence.log_ratio_clip=-1.0"],
          "log_ratio_clip"),
    _case("toy_fdiv_log_ratio_clip_nan", "toy_fdiv", ["distill.divergence.log_ratio_clip=.nan"], "log_ratio_clip"),
    _case("toy_uni_log_ratio_clip_string", "toy_fdiv", ["distill.divergence={name: uni, log_ratio_clip: wide}"],
          "log_ratio_clip"),
    _case("toy_lognormal_p_mean_nan", "toy_gmm", ["distill.time_sampler.p_mean=.nan"], "p_mean"),
    _case("toy_lognormal_p_mean_huge", "toy_gmm", ["distill.time_sampler.p_mean=1.0e+30"], "p_mean"),
    _case("toy_lognormal_p_mean_string", "toy_gmm", ["distill.time_sampler.p_mean=high"], "p_mean"),
    _case("toy_lognormal_p_std_negative", "toy_gmm", ["distill.time_sampler.p_std=-1.0"], "p_std",
          note="a negative std draws the same law as its absolute value; still not a std"),
    _case("toy_lognormal_p_std_inf", "toy_gmm", ["distill.time_sampler.p_std=.inf"], "p_std"),
    _case("toy_aux_lognormal_p_std_nan", "toy_gmm", ["distill.aux_time_sampler.p_std=.nan"], "p_std"),
    _case("toy_karras_n_grid_one", "toy_gmm", ["distill.time_sampler={name: karras, n_grid: 1}"], "n_grid"),
    _case("toy_karras_n_grid_float", "toy_gmm", ["distill.time_sampler={name: karras, n_grid: 2.5}"], "n_grid"),
    _case("toy_karras_u_max_zero", "toy_gmm", ["distill.time_sampler={name: karras, u_max: 0.0}"], "u_max"),
    _case("toy_karras_u_max_nan", "toy_gmm", ["distill.time_sampler={name: karras, u_max: .nan}"], "u_max"),
    _case("toy_karras_rho_negative", "toy_gmm", ["distill.time_sampler={name: karras, rho: -1.0}"], "rho"),
    _case("toy_uniform_t_min_above_t_max", "toy_gmm", ["distill.time_sampler={name: uniform, t_min: 5.0, t_max: 1.0}"],
          "t_min"),
    _case("toy_uniform_t_min_negative", "toy_gmm", ["distill.time_sampler={name: uniform, t_min: -1.0}"], "t_min"),
    _case("toy_uniform_t_max_above_process", "toy_gmm", ["distill.time_sampler={name: uniform, t_max: 1.0e+30}"],
          "t_max"),
    _case("toy_uniform_anneal_reversed", "toy_gmm", ["distill.time_sampler={name: uniform, anneal: [0.8, 0.2]}"],
          "anneal"),
    _case("toy_uniform_t_max_end_nan", "toy_gmm", ["distill.time_sampler={name: uniform, t_max_end: .nan}"],
          "t_max_end"),
    _case("toy_beta_a_zero", "toy_gmm", ["distill.time_sampler={name: beta, a: 0.0}"], "time_sampler.a"),
    _case("toy_beta_a_negative", "toy_gmm", ["distill.time_sampler={name: beta, a: -1.0}"], "time_sampler.a"),
    _case("toy_beta_b_nan", "toy_gmm", ["distill.time_sampler={name: beta, b: .nan}"], "time_sampler.b", timeout=60),
    _case("toy_logit_normal_std_nan", "toy_gmm", ["distill.time_sampler={name: logit_normal, std: .nan}"],
          "time_sampler.std"),
    _case("toy_process_sigma_min_zero", "toy_gmm", ["process.sigma_min=0"], "sigma_min"),
    _case("toy_process_sigma_max_nan", "toy_gmm", ["process.sigma_max=.nan"], "sigma_max"),
    _case("toy_process_vp_cosine_s_nan", "toy_gmm", ["process={name: vp_cosine, s: .nan}"], "process.s"),
    _case("toy_process_rf_t_max_above_one", "toy_gmm", ["process={name: rectified_flow, t_max: 1.5}",
                                                        "distill.divergence={name: fgm}"], "t_max"),
    _case("toy_process_vp_linear_t_min_negative", "toy_gmm", ["process={name: vp_linear, t_min: -0.5}"], "t_min"),
    # ============================================================== toy_gmm: backend sections
    _case("toy_latent_dim_zero", "toy_gmm", ["latent_dim=0"], "latent_dim"),
    _case("toy_latent_dim_negative", "toy_gmm", ["latent_dim=-2"], "latent_dim"),
    _case("toy_latent_dim_float", "toy_gmm", ["latent_dim=2.5"], "latent_dim"),
    _case("toy_generator_hidden_zero", "toy_gmm", ["generator.hidden=0"], "hidden"),
    _case("toy_generator_hidden_1e7", "toy_gmm", ["generator.hidden=10000000"], "hidden",
          note="absurd width: a 1e7 x 1e7 layer (4e14 bytes)"),
    _case("toy_generator_depth_zero", "toy_gmm", ["generator.depth=0"], "depth"),
    _case("toy_fake_hidden_zero", "toy_gmm", ["distill.fake.hidden=0"], "hidden"),
    _case("toy_fake_depth_string", "toy_gmm", ["distill.fake.depth=three"], "depth"),
    _case("toy_fdiv_discriminator_hidden_zero", "toy_fdiv", ["distill.discriminator.hidden=0"], "hidden"),
    _case("toy_eval_n_samples_zero", "toy_gmm", ["eval.n_samples=0"], "eval.n_samples"),
    _case("toy_eval_n_samples_negative", "toy_gmm", ["eval.n_samples=-5"], "eval.n_samples"),
    _case("toy_eval_radius_negative", "toy_gmm", ["eval.radius=-1.0"], "eval.radius"),
    _case("toy_eval_draws_one", "toy_gmm", ["eval.draws=1"], "eval.draws"),
    _case("toy_eval_too_few_per_draw", "toy_gmm", ["eval.draws=150"], "eval.n_samples"),
    _case("toy_eval_min_fraction_nan", "toy_gmm", ["eval.min_fraction=.nan"], "eval.min_fraction"),
    _case("toy_mixture_modes_zero", "toy_gmm", ["mixture.ring.modes=0"], "modes"),
    _case("toy_mixture_std_negative", "toy_gmm", ["mixture.ring.std=-0.3"], "std"),
    _case("toy_mixture_radius_nan", "toy_gmm", ["mixture.ring.radius=.nan"], "radius"),
    _case("toy_mixture_weights_negative", "toy_gmm", ["mixture.ring.weights=[1.5, -0.5, 0.0, 0.0]"], "weights"),
    # ============================================================== train: numeric ranges (toy_gmm)
    _case("train_lr_nan", "toy_gmm", ["train.lr.generator=.nan"], "train.lr"),
    _case("train_lr_inf", "toy_gmm", ["train.lr.generator=.inf"], "train.lr"),
    _case("train_lr_neg_inf", "toy_gmm", ["train.lr.generator=-.inf"], "train.lr"),
    _case("train_lr_negative", "toy_gmm", ["train.lr.generator=-0.001"], "train.lr"),
    _case("train_lr_zero", "toy_gmm", ["train.lr.generator=0"], "train.lr"),
    _case("train_lr_1e30", "toy_gmm", ["train.lr.generator=1.0e+30"], "train.lr"),
    _case("train_lr_fake_nan", "toy_gmm", ["train.lr.fake=.nan"], "train.lr"),
    _case("train_lr_unknown_module", "toy_gmm", ["train.lr.discriminator=0.001"], "train.lr"),
    _case("train_lr_empty_prefix", "toy_gmm", ["train.lr={generator.: 0.001}"], "train.lr"),
    _case("train_lr_prefix_matches_nothing", "toy_gmm", ["train.lr={generator: 0.001, generator.nothere: 0.01}"],
          "train.lr"),
    _case("train_grad_clip_nan", "toy_gmm", ["train.grad_clip=.nan"], "train.grad_clip"),
    _case("train_grad_clip_negative", "toy_gmm", ["train.grad_clip=-1.0"], "train.grad_clip"),
    _case("train_grad_clip_neg_inf", "toy_gmm", ["train.grad_clip=-.inf"], "train.grad_clip"),
    _case("train_grad_clip_string", "toy_gmm", ["train.grad_clip=abc"], "train.grad_clip"),
    _case("train_betas_nan", "toy_gmm", ["train.betas=[.nan, 0.999]"], "train.betas"),
    _case("train_betas_one_number", "toy_gmm", ["train.betas=[0.9]"], "train.betas"),
    _case("train_betas_three_numbers", "toy_gmm", ["train.betas=[0.9, 0.99, 0.999]"], "train.betas"),
    _case("train_betas_above_one", "toy_gmm", ["train.betas=[1.5, 0.999]"], "train.betas"),
    _case("train_betas_negative", "toy_gmm", ["train.betas=[-0.1, 0.999]"], "train.betas"),
    _case("train_betas_second_is_one", "toy_gmm", ["train.betas=[0.9, 1.0]"], "train.betas"),
    _case("train_betas_strings", "toy_gmm", ["train.betas=[a, b]"], "train.betas"),
    _case("train_ema_decay_nan", "toy_gmm", ["train.ema_decay=.nan"], "train.ema_decay"),
    _case("train_ema_decay_one", "toy_gmm", ["train.ema_decay=1.0"], "train.ema_decay"),
    _case("train_ema_decay_negative", "toy_gmm", ["train.ema_decay=-0.5"], "train.ema_decay"),
    _case("train_ema_decay_inf", "toy_gmm", ["train.ema_decay=.inf"], "train.ema_decay"),
    _case("train_warmup_negative", "toy_gmm", ["train.warmup_steps=-5"], "train.warmup_steps"),
    _case("train_warmup_float", "toy_gmm", ["train.warmup_steps=2.5"], "train.warmup_steps"),
    _case("train_warmup_1e30", "toy_gmm", ["train.warmup_steps=1.0e+30"], "train.warmup_steps",
          note="10^30 warm-up steps: the learning rate stays ~0 for the whole run"),
    _case("train_warmup_nan", "toy_gmm", ["train.warmup_steps=.nan"], "train.warmup_steps"),
    _case("train_checkpoint_every_zero", "toy_gmm", ["train.checkpoint_every=0"], "train.checkpoint_every"),
    _case("train_checkpoint_every_negative", "toy_gmm", ["train.checkpoint_every=-1"], "train.checkpoint_every"),
    _case("train_checkpoint_every_nan", "toy_gmm", ["train.checkpoint_every=.nan"], "train.checkpoint_every"),
    _case("train_checkpoint_every_inf", "toy_gmm", ["train.checkpoint_every=.inf"], "train.checkpoint_every"),
    _case("train_batch_size_zero", "toy_gmm", ["train.batch_size=0"], "train.batch_size"),
    _case("train_batch_size_negative", "toy_gmm", ["train.batch_size=-4"], "train.batch_size"),
    _case("train_batch_size_float", "toy_gmm", ["train.batch_size=2.5"], "train.batch_size"),
    _case("train_batch_size_string", "toy_gmm", ["train.batch_size=big"], "train.batch_size"),
    _case("train_batch_size_1e8", "toy_gmm", ["train.batch_size=1.0e+8"], "train.batch_size", timeout=120,
          note="run under an address-space limit (prlimit --as=8G) so the allocation fails instead of the OOM killer"),
    _case("train_steps_zero", "toy_gmm", ["train.steps=0"], "train.steps"),
    _case("train_steps_negative", "toy_gmm", ["train.steps=-1"], "train.steps"),
    _case("train_steps_float", "toy_gmm", ["train.steps=2.5"], "train.steps"),
    _case("train_steps_nan", "toy_gmm", ["train.steps=.nan"], "train.steps"),
    _case("train_steps_1e30", "toy_gmm", ["train.steps=1.0e+30"], "train.steps", timeout=60,
          note="10^30 steps: trains until killed"),
    _case("train_aux_steps_negative", "toy_gmm", ["train.aux_steps=-1"], "train.aux_steps"),
    _case("train_aux_steps_float", "toy_gmm", ["train.aux_steps=1.5"], "train.aux_steps"),
    _case("train_aux_steps_1e7", "toy_gmm", ["train.aux_steps=1.0e+7"], "train.aux_steps", timeout=60,
          note="10^7 fake-score updates per generator update"),
    _case("train_weight_decay_negative", "toy_gmm", ["train.weight_decay=-1.0"], "train.weight_decay"),
    _case("train_weight_decay_nan", "toy_gmm", ["train.weight_decay=.nan"], "train.weight_decay"),
    _case("train_weight_decay_inf", "toy_gmm", ["train.weight_decay=.inf"], "train.weight_decay"),
    _case("train_weight_decay_string", "toy_gmm", ["train.weight_decay=lots"], "train.weight_decay"),
    _case("train_max_skipped_negative", "toy_gmm", ["train.max_skipped=-1"], "train.max_skipped"),
    _case("train_max_skipped_float", "toy_gmm", ["train.max_skipped=2.5"], "train.max_skipped"),
    _case("train_max_skipped_nan", "toy_gmm", ["train.max_skipped=.nan"], "train.max_skipped"),
    _case("train_log_every_zero", "toy_gmm", ["train.log_every=0"], "train.log_every"),
    _case("train_keep_checkpoints_zero", "toy_gmm", ["train.keep_checkpoints=0"], "train.keep_checkpoints"),
    _case("train_eval_every_negative", "toy_gmm", ["train.eval_every=-1"], "train.eval_every"),
    _case("train_seed_float", "toy_gmm", ["train.seed=2.5"], "train.seed"),
    _case("train_seed_1e30", "toy_gmm", ["train.seed=1.0e+30"], "train.seed"),

    # ============================================================== toy_markov
    _case("markov_unknown_key", "toy_markov", ["hiddn=16"], "hiddn"),
    _case("markov_chain_unknown_key", "toy_markov", ["chain.lenght=3"], "lenght"),
    _case("markov_chain_string", "toy_markov", ["chain=abc"], "chain"),
    _case("markov_chain_length_zero", "toy_markov", ["chain.length=0"], "length"),
    _case("markov_chain_length_float", "toy_markov", ["chain.length=2.5"], "length"),
    _case("markov_chain_init_nan", "toy_markov", ["chain.init=[.nan, 1.0]"], "init"),
    _case("markov_chain_init_negative", "toy_markov", ["chain.init=[1.5, -0.5]"], "init"),
    _case("markov_chain_transition_rows", "toy_markov", ["chain.transition=[[0.5, 0.6], [0.3, 0.7]]"], "transition"),
    _case("markov_steps_zero", "toy_markov", ["steps=0"], "steps"),
    _case("markov_steps_negative", "toy_markov", ["steps=-1"], "steps"),
    _case("markov_hidden_zero", "toy_markov", ["hidden=0"], "hidden"),
    _case("markov_warm_start_negative", "toy_markov", ["warm_start_steps=-1"], "warm_start_steps"),
    _case("markov_eval_teacher_steps_zero", "toy_markov", ["eval_teacher_steps=[0]"], "eval_teacher_steps"),
    _case("markov_eval_teacher_steps_string", "toy_markov", ["eval_teacher_steps=four"], "eval_teacher_steps"),
    _case("markov_ratio_unknown", "toy_markov", ["ratio=exact"], "ratio"),
    _case("markov_oracle_with_discriminator", "toy_markov", ["ratio=oracle", "distill.discriminator={hidden: 4}"],
          "distill.discriminator"),
    _case("markov_real_unknown", "toy_markov", ["distill.real=teacher"], "distill.real"),
    _case("markov_estimator_continuous", "toy_markov", ["distill.divergence.name=sim"], "distill.divergence.name"),
    _case("markov_group_size_zero", "toy_markov", ["distill.divergence.group_size=0"], "group_size"),
    _case("markov_group_size_float", "toy_markov", ["distill.divergence.group_size=2.5"], "group_size"),
    _case("markov_group_size_not_dividing_batch", "toy_markov", ["distill.divergence.group_size=3"], "group_size"),
    _case("markov_group_size_1e7", "toy_markov", ["distill.divergence.group_size=10000000"], "group_size"),
    _case("markov_group_size_string", "toy_markov", ["distill.divergence.group_size=four"], "group_size"),
    _case("markov_didi_clip_negative", "toy_markov", ["distill.divergence.clip=-1.0"], "clip"),
    _case("markov_didi_clip_nan", "toy_markov", ["distill.divergence.clip=.nan"], "clip"),
    _case("markov_didi_f_unknown", "toy_markov", ["distill.divergence.f=chi"], "'chi'"),
    _case("markov_didi_log_ratio_clip_negative", "toy_markov", ["distill.divergence.log_ratio_clip=-1.0"],
          "log_ratio_clip"),
    _case("markov_didi_normalise_string", "toy_markov", ["distill.divergence.normalise='no'"], "normalise",
          note="the string 'no' is truthy: normalisation stays ON"),
    _case("markov_corruptions_zero", "toy_markov", ["distill.corruptions=0"], "distill.corruptions"),
    _case("markov_corruptions_negative", "toy_markov", ["distill.corruptions=-2"], "distill.corruptions"),
    _case("markov_corruptions_float", "toy_markov", ["distill.corruptions=2.5"], "distill.corruptions"),
    _case("markov_ism_weight_nan", "toy_markov", ["distill.ism_weight=.nan"], "distill.ism_weight"),
    _case("markov_ism_weight_negative", "toy_markov", ["distill.ism_weight=-0.1"], "distill.ism_weight"),
    _case("markov_entropy_weight_inf", "toy_markov", ["distill.entropy_weight=.inf"], "distill.entropy_weight"),
    _case("markov_time_weight_unknown", "toy_markov", ["distill.time_weight=inverse"], "distill.time_weight"),
    _case("markov_coupled_time_string", "toy_markov", ["distill.coupled_time=maybe"], "distill.coupled_time"),
    _case("markov_time_sampler_uniform_reversed", "toy_markov",
          ["distill.time_sampler={name: uniform, t_min: 0.9, t_max: 0.1}"], "t_min"),
    _case("markov_time_sampler_beta_nan", "toy_markov", ["distill.time_sampler={name: beta, a: .nan}"],
          "time_sampler.a", timeout=60),

    # ============================================================== image
    _case("image_unknown_key", "image", ["teachr=digits"], "teachr"),
    _case("image_unknown_eval_key", "image", ["eval.n_sample=5"], "eval.n_sample"),
    _case("image_teacher_list", "image", ["teacher=[digits]"], "teacher"),
    _case("image_teacher_number", "image", ["teacher=3"], "teacher"),
    _case("image_teacher_unknown_name", "image", ["teacher=digitz"], "digitz"),
    _case("image_teacher_missing_folder", "image", ["teacher={tmp}/no_such_teacher"], "no_such_teacher"),
    _case("image_teacher_is_a_file", "image", ["teacher={tmp}/not_a_dir.txt"], "not_a_dir.txt",
          files={"not_a_dir.txt": "a plain file\n"}),
    _case("image_teacher_without_unet", "image", ["teacher={tmp}/t_nounet"], "unet",
          files={"t_nounet/scheduler/scheduler_config.json": EDM_SCHEDULER}),
    _case("image_teacher_without_scheduler", "image", ["teacher={tmp}/teacher"], "scheduler",
          setup=("setup_image_teacher_without_scheduler", "{teacher_image} copied to {tmp}/teacher minus scheduler/")),
    _case("image_scheduler_corrupt_json", "image", ["teacher={tmp}/teacher"], "scheduler_config.json",
          setup=("setup_image_scheduler_corrupt", "{teacher_image} copied to {tmp}/teacher; scheduler_config.json "
                                                  "is not JSON")),
    _case("image_scheduler_unknown_class", "image", ["teacher={tmp}/teacher"], "NoSuchScheduler",
          setup=("setup_image_scheduler_unknown_class", "{teacher_image} copied; scheduler _class_name "
                                                        "NoSuchScheduler")),
    _case("image_scheduler_without_class", "image", ["teacher={tmp}/teacher"], "_class_name",
          setup=("setup_image_scheduler_empty_object", "{teacher_image} copied; scheduler_config.json is {}")),
    _case("image_scheduler_is_list", "image", ["teacher={tmp}/teacher"], "scheduler_config.json",
          setup=("setup_image_scheduler_list", "{teacher_image} copied; scheduler_config.json is [1, 2]")),
    _case("image_scheduler_sigma_max_negative", "image", ["teacher={tmp}/teacher"], "sigma_max",
          setup=("setup_image_scheduler_sigma_max_negative", "{teacher_image} copied; EDM sigma_max = -80")),
    _case("image_unet_config_corrupt", "image", ["teacher={tmp}/teacher"], "config.json",
          setup=("setup_image_unet_config_corrupt", "{teacher_image} copied; unet/config.json is not JSON")),
    _case("image_unet_weights_missing", "image", ["teacher={tmp}/teacher"], "diffusion_pytorch_model",
          setup=("setup_image_unet_weights_missing", "{teacher_image} copied; unet/*.safetensors deleted")),
    _case("image_unet_weights_truncated", "image", ["teacher={tmp}/teacher"], "diffusion_pytorch_model",
          setup=("setup_image_unet_weights_truncated", "{teacher_image} copied; unet safetensors truncated to half")),
    _case("image_unet_pickled_bin_only", "image", ["teacher={tmp}/teacher"], "diffusion_pytorch_model.bin",
          setup=("setup_image_unet_pickled", "{teacher_image} re-saved with safe_serialization=False (only a pickled "
                                             "diffusion_pytorch_model.bin)"),
          note="the docs promise safetensors and no pickle; a pickle-only folder should be refused or named"),
    _case("image_teacher_is_text_model", "image", ["teacher={teacher_text}"], "scheduler"),
    _case("image_guidance_scale_nan", "image", ["guidance_scale=.nan"], "guidance_scale"),
    _case("image_guidance_scale_inf", "image", ["guidance_scale=.inf"], "guidance_scale"),
    _case("image_guidance_scale_1e30", "image", ["guidance_scale=1.0e+30"], "guidance_scale"),
    _case("image_guidance_scale_string", "image", ["guidance_scale=strong"], "guidance_scale"),
    _case("image_sigmas_negative", "image", ["student_sigmas=[-1.0]"], "student_sigmas"),
    _case("image_sigmas_zero", "image", ["student_sigmas=[0.0]"], "student_sigmas"),
    _case("image_sigmas_empty", "image", ["student_sigmas=[]"], "student_sigmas"),
    _case("image_sigmas_increasing", "image", ["student_sigmas=[0.8, 2.5]"], "student_sigmas"),
    _case("image_sigmas_repeated", "image", ["student_sigmas=[2.5, 2.5]"], "student_sigmas"),
    _case("image_sigmas_above_teacher_max", "image", ["student_sigmas=[100.0]"], "student_sigmas",
          note="the teacher's scheduler has sigma_max = 80"),
    _case("image_sigmas_1e30", "image", ["student_sigmas=[1.0e+30]"], "student_sigmas"),
    _case("image_sigmas_nan", "image", ["student_sigmas=[.nan]"], "student_sigmas"),
    _case("image_sigmas_inf", "image", ["student_sigmas=[.inf]"], "student_sigmas"),
    _case("image_sigmas_scalar", "image", ["student_sigmas=2.5"], "student_sigmas"),
    _case("image_sigmas_strings", "image", ["student_sigmas=[high]"], "student_sigmas"),
    _case("image_prompts_on_class_teacher", "image", ["prompts=[a cat]"], "prompts"),
    _case("image_prompts_string", "image", ["prompts=a cat"], "prompts"),
    _case("image_real_pool_zero", "image_fdiv", ["real_pool=0"], "real_pool"),
    _case("image_real_pool_negative", "image_fdiv", ["real_pool=-4"], "real_pool"),
    _case("image_real_pool_float", "image", ["real_pool=2.5"], "real_pool"),
    _case("image_eval_n_samples_zero", "image", ["eval.n_samples=0"], "eval.n_samples"),
    _case("image_eval_n_samples_negative", "image", ["eval.n_samples=-1"], "eval.n_samples"),
    _case("image_discriminator_width_zero", "image_fdiv", ["distill.discriminator.width=0"], "width"),
    _case("image_discriminator_width_string", "image_fdiv", ["distill.discriminator.width=wide"], "width"),
    _case("image_reward_without_alpha", "image", ["distill.reward={name: classifier}"], "alpha"),
    _case("image_reward_unknown", "image", ["distill.reward={name: aesthetic, alpha: 0.1}"], "aesthetic"),
    _case("image_reward_alpha_nan", "image", ["distill.reward={name: contrast, alpha: .nan}"], "alpha"),
    _case("image_reward_name_list", "image", ["distill.reward={name: [contrast], alpha: 0.1}"], "distill.reward.name"),
    _case("image_divergence_didi", "image", ["distill.divergence.name=didi"], "distill.divergence.name"),
    _case("image_time_sampler_t_min_negative", "image", ["distill.time_sampler={name: uniform, t_min: -5.0}"],
          "t_min"),
    _case("image_teach_data_missing", "image_teach", ["data={tmp}/no_such.npz"], "no_such.npz"),
    _case("image_teach_data_garbage_npz", "image_teach", ["data={tmp}/garbage.npz"], "garbage.npz",
          files={"garbage.npz": "this is not a zip file\n"}),
    _case("image_teach_label_dropout_negative", "image_teach", ["label_dropout=-0.5"], "label_dropout"),
    _case("image_teach_network_unknown_key", "image_teach", ["network.block_channels=[8, 16]"],
          "network.block_channels"),
    _case("image_teach_label_dropout_above_one", "image_teach", ["label_dropout=1.5"], "label_dropout"),
    _case("image_teach_eval_steps_zero", "image_teach", ["eval.steps=0"], "eval.steps"),
    _case("image_teach_network_list", "image_teach", ["network=[8, 16]"], "network"),
    _case("image_teach_scheduler_unknown_class", "image_teach", ["scheduler._class_name=NoSuchScheduler"],
          "NoSuchScheduler"),

    # ============================================================== text
    _case("text_unknown_key", "text", ["teacher_pools=8"], "teacher_pools"),
    _case("text_unknown_rollout_key", "text", ["rollout.tau_rang=[0.1, 0.9]"], "rollout.tau_rang"),
    _case("text_unknown_guidance_key", "text", ["guidance.scal=[1.0, 1.0]"], "guidance.scal"),
    _case("text_teacher_missing_folder", "text", ["teacher={tmp}/no_such_mdlm"], "no_such_mdlm"),
    _case("text_teacher_is_image_teacher", "text", ["teacher={teacher_image}"], "config.json"),
    _case("text_teacher_config_corrupt", "text", ["teacher={tmp}/mdlm"], "config.json",
          setup=("setup_text_teacher_config_corrupt", "{teacher_text} copied to {tmp}/mdlm; config.json is not JSON")),
    _case("text_teacher_weights_truncated", "text", ["teacher={tmp}/mdlm"], "model.safetensors",
          setup=("setup_text_teacher_weights_truncated", "{teacher_text} copied to {tmp}/mdlm; model.safetensors "
                                                         "truncated")),
    _case("text_length_zero", "text", ["length=0"], "length"),
    _case("text_length_one", "text", ["length=1"], "length"),
    _case("text_length_negative", "text", ["length=-3"], "length"),
    _case("text_length_float", "text", ["length=2.5"], "length"),
    _case("text_teacher_pool_zero", "text", ["teacher_pool=0"], "teacher_pool"),
    _case("text_teacher_pool_negative", "text", ["teacher_pool=-8"], "teacher_pool"),
    _case("text_teacher_pool_steps_zero", "text", ["teacher_pool_steps=0"], "teacher_pool_steps"),
    _case("text_rollout_steps_zero", "text", ["rollout.steps=0"], "rollout.steps"),
    _case("text_tau_range_full", "text", ["rollout.tau_range=[0.0, 1.0]"], "rollout.tau_range"),
    _case("text_tau_range_nan", "text", ["rollout.tau_range=[.nan, 0.5]"], "rollout.tau_range"),
    _case("text_tau_range_one_number", "text", ["rollout.tau_range=[0.5]"], "rollout.tau_range"),
    _case("text_tau_range_string", "text", ["rollout.tau_range=wide"], "rollout.tau_range"),
    _case("text_tau_beta_negative", "text", ["rollout.tau={name: beta, a: -1.0, b: 2.0}"], "rollout.tau"),
    _case("text_tau_beta_zero", "text", ["rollout.tau={name: beta, a: 0.0, b: 2.0}"], "rollout.tau"),
    _case("text_tau_unknown_name", "text", ["rollout.tau={name: gamma}"], "rollout.tau.name"),
    _case("text_tau_string", "text", ["rollout.tau=beta"], "rollout.tau"),
    _case("text_guidance_scale_nan", "text", ["guidance.scale=[.nan, .nan]"], "guidance.scale"),
    _case("text_guidance_scale_one_number", "text", ["guidance.scale=[1.0]"], "guidance.scale"),
    _case("text_guidance_tilt_fraction_unused", "text", ["guidance.tilt_fraction=1.5"], "tilt_fraction",
          note="guidance is off (scale 0, candidates 1), so the bad value is never checked"),
    _case("text_guidance_tilt_fraction_active", "text", ["guidance.tilt_fraction=1.5", "guidance.scale=[1.0, 1.0]"],
          "tilt_fraction"),
    _case("text_guidance_candidates_zero", "text", ["guidance.candidates=0"], "candidates"),
    _case("text_guidance_candidates_negative", "text", ["guidance.candidates=-2"], "candidates"),
    _case("text_guidance_grad_clip_negative", "text", ["guidance.grad_clip=-1.0", "guidance.scale=[1.0, 1.0]"],
          "grad_clip"),
    _case("text_eval_steps_empty", "text", ["eval.steps=[]"], "eval.steps"),
    _case("text_eval_steps_zero", "text", ["eval.steps=[0]"], "eval.steps"),
    _case("text_eval_steps_number", "text", ["eval.steps=4"], "eval.steps"),
    _case("text_eval_n_samples_zero", "text", ["eval.n_samples=0"], "eval.n_samples"),
    _case("text_eval_judge_missing", "text", ["eval.judge={tmp}/no_such_judge"], "no_such_judge"),
    _case("text_eval_judge_is_mdlm", "text", ["eval.judge={teacher_text}"], "eval.judge"),
    _case("text_group_size_not_dividing_batch", "text", ["distill.divergence.group_size=3"], "group_size"),
    _case("text_group_size_zero", "text", ["distill.divergence.group_size=0"], "group_size"),
    _case("text_didi_clip_nan", "text", ["distill.divergence.clip=.nan"], "clip"),
    _case("text_ism_weight_negative", "text", ["distill.ism_weight=-0.01"], "distill.ism_weight"),
    _case("text_entropy_weight_nan", "text", ["distill.entropy_weight=.nan"], "distill.entropy_weight"),
    _case("text_corruptions_zero", "text", ["distill.corruptions=0"], "distill.corruptions"),
    _case("text_trainable_blocks_negative", "text", ["distill.discriminator.trainable_blocks=-1"], "trainable_blocks"),
    _case("text_trainable_blocks_float", "text", ["distill.discriminator.trainable_blocks=1.5"], "trainable_blocks"),
    _case("text_corpus_missing", "text_corpus", ["corpus={tmp}/no_such_corpus.txt"], "no_such_corpus.txt"),
    _case("text_corpus_empty", "text_corpus", [], "corpus.txt", files={"corpus.txt": ""}),
    _case("text_corpus_whitespace", "text_corpus", [], "corpus.txt", files={"corpus.txt": "\n\n   \n"}),
    _case("text_corpus_too_short", "text_corpus", [], "corpus.txt", files={"corpus.txt": "hi\n"}),
    _case("text_corpus_bad_suffix", "text_corpus", ["corpus={tmp}/corpus.csv"], "corpus.csv",
          files={"corpus.csv": "text\nsome words here\n"}),
    _case("text_corpus_bad_json", "text_corpus", ["corpus={tmp}/corpus.json"], "corpus.json",
          files={"corpus.json": "{not json\n"}),
    _case("text_corpus_jsonl_without_text", "text_corpus", ["corpus={tmp}/corpus.jsonl"], "text",
          files={"corpus.jsonl": '{"body": "some words"}\n{"body": "more words"}\n'}),
    _case("text_corpus_is_directory", "text_corpus", ["corpus={tmp}/cdir"], "cdir", files={"cdir/keep.txt": ""}),
    _case("text_teach_corpus_missing", "text_teach", ["corpus={tmp}/no_such_corpus.txt"], "no_such_corpus.txt"),
    _case("text_teach_corpus_empty", "text_teach", ["corpus={tmp}/corpus.txt"], "corpus.txt",
          files={"corpus.txt": ""}),
    _case("text_teach_kind_unknown", "text_teach", ["kind=bert"], "kind"),
    _case("text_teach_tokenizer_missing", "text_teach", ["tokenizer={tmp}/no_such_tokenizer"], "no_such_tokenizer"),
    _case("text_teach_network_unknown_key", "text_teach", ["network.hidden=32"], "network.hidden"),
    _case("text_judge_network_unknown_key", "text_teach", ["kind=judge", "network={n_layers: 2}"], "network.n_layers"),
    _case("text_teach_length_zero", "text_teach", ["length=0"], "length"),

    # ============================================================== pde
    _case("pde_unknown_key", "pde", ["student_sigma=[5.0]"], "student_sigma"),
    _case("pde_teacher_missing_folder", "pde", ["teacher={tmp}/no_such_pde"], "no_such_pde"),
    _case("pde_teacher_is_image_teacher", "pde", ["teacher={teacher_image}"], "pde.json"),
    _case("pde_teacher_without_pde_json", "pde", ["teacher={tmp}/pde_teacher"], "pde.json",
          setup=("setup_pde_teacher_without_pde_json", "{teacher_pde} copied to {tmp}/pde_teacher minus pde.json")),
    _case("pde_teacher_pde_json_corrupt", "pde", ["teacher={tmp}/pde_teacher"], "pde.json",
          setup=("setup_pde_teacher_pde_json_corrupt", "{teacher_pde} copied; pde.json is not JSON")),
    _case("pde_teacher_pde_json_without_pde", "pde", ["teacher={tmp}/pde_teacher"], "pde.json",
          setup=("setup_pde_teacher_pde_json_without_pde", "{teacher_pde} copied; 'pde' removed from pde.json")),
    _case("pde_teacher_without_unet", "pde", ["teacher={tmp}/pde_teacher"], "unet",
          setup=("setup_pde_teacher_without_unet", "{teacher_pde} copied minus unet/")),
    _case("pde_teacher_scheduler_corrupt", "pde", ["teacher={tmp}/pde_teacher"], "scheduler_config.json",
          setup=("setup_pde_teacher_scheduler_corrupt", "{teacher_pde} copied; scheduler_config.json is not JSON")),
    _case("pde_sigmas_above_teacher_max", "pde", ["student_sigmas=[100.0]"], "student_sigmas",
          note="the teacher's scheduler has sigma_max = 80"),
    _case("pde_sigmas_negative", "pde", ["student_sigmas=[-5.0]"], "student_sigmas"),
    _case("pde_sigmas_nan", "pde", ["student_sigmas=[.nan]"], "student_sigmas"),
    _case("pde_sigmas_empty", "pde", ["student_sigmas=[]"], "student_sigmas"),
    _case("pde_eval_n_samples_zero", "pde", ["eval.n_samples=0"], "eval.n_samples"),
    _case("pde_eval_n_samples_negative", "pde", ["eval.n_samples=-4"], "eval.n_samples"),
    _case("pde_reward_alpha_nan", "pde", ["distill.reward={name: residual, alpha: .nan}"], "alpha"),
    _case("pde_reward_alpha_inf", "pde", ["distill.reward={name: residual, alpha: .inf}"], "alpha"),
    _case("pde_reward_alpha_string", "pde", ["distill.reward={name: residual, alpha: lots}"], "alpha"),
    _case("pde_reward_through_list", "pde", ["distill.reward={name: residual, alpha: 1.0, through: [solution]}"],
          "through"),
    _case("pde_reward_without_name", "pde", ["distill.reward={alpha: 1.0}"], "distill.reward"),
    _case("pde_reward_unknown_option", "pde", ["distill.reward={name: residual, alpha: 1.0, weight: 2}"], "weight"),
    _case("pde_karras_n_grid_zero", "pde", ["distill.time_sampler.n_grid=0"], "n_grid"),
    _case("pde_aux_lognormal_p_std_nan", "pde", ["distill.aux_time_sampler.p_std=.nan"], "p_std"),
    _case("pde_discriminator_section", "pde", ["distill.discriminator={width: 8}"], "distill.discriminator"),
    _case("pde_real_bogus", "pde", ["distill.real=bogus"], "distill.real",
          note="PDE has no real sources; any distill.real value is ignored"),
    _case("pde_teach_data_missing", "pde_teach", ["data={tmp}/no_such_data"], "no_such_data"),
    _case("pde_teach_data_is_a_file", "pde_teach", ["data={tmp}/not_a_dir.txt"], "not_a_dir.txt",
          files={"not_a_dir.txt": "a plain file\n"}),
    _case("pde_teach_meta_corrupt", "pde_teach", ["data={tmp}/data"], "meta.json",
          setup=("setup_pde_data_meta_corrupt", "{teacher_pde}/../data copied to {tmp}/data; meta.json is not JSON")),
    _case("pde_teach_meta_unknown_pde", "pde_teach", ["data={tmp}/data"], "meta.json",
          setup=("setup_pde_data_meta_unknown_pde", "{teacher_pde}/../data copied; meta.json pde = 'navier_stokes'")),
    _case("pde_teach_meta_without_size", "pde_teach", ["data={tmp}/data"], "meta.json",
          setup=("setup_pde_data_meta_without_size", "{teacher_pde}/../data copied; 'size' removed from meta.json")),
    _case("pde_teach_train_missing", "pde_teach", ["data={tmp}/data"], "train.npz",
          setup=("setup_pde_data_train_missing", "{teacher_pde}/../data copied; train.npz deleted")),
    _case("pde_teach_train_garbage", "pde_teach", ["data={tmp}/data"], "train.npz",
          setup=("setup_pde_data_train_garbage", "{teacher_pde}/../data copied; train.npz holds text")),
    _case("pde_teach_train_wrong_array", "pde_teach", ["data={tmp}/data"], "fields",
          setup=("setup_pde_data_train_wrong_array", "{teacher_pde}/../data copied; train.npz holds 'x' only")),
    _case("pde_teach_train_nan", "pde_teach", ["data={tmp}/data"], "train.npz",
          setup=("setup_pde_data_train_nan", "{teacher_pde}/../data copied; one NaN in train.npz fields")),
    _case("pde_teach_network_channels", "pde_teach", ["network.in_channels=3", "network.out_channels=3"],
          "channels"),
    _case("pde_teach_network_unknown_key", "pde_teach", ["network.foo=1"], "network.foo"),
    _case("pde_teach_scheduler_not_edm", "pde_teach", ["scheduler={_class_name: FlowMatchEulerDiscreteScheduler}"],
          "scheduler"),
    _case("pde_teach_eval_steps_zero", "pde_teach", ["eval.steps=0"], "eval.steps"),
    _case("pde_teach_eval_n_samples_zero", "pde_teach", ["eval.n_samples=0"], "eval.n_samples"),
]


# ------------------------------------------------------------------ setup helpers (called as fn(tmp, paths))
def _cli(*args: str) -> None:
    """Run the command line in a child process (as a user would); raise if it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "unidistill.engine.cli", *args], env=env, capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise RuntimeError(f"setup run failed ({res.returncode}): {res.stderr[-2000:]}")


def _toy_run(tmp: Path, name: str = "done", *sets: str) -> Path:
    cfg = Path(tmp) / "_setup_toy.yaml"
    cfg.write_text(TOY)
    args = ["distill", str(cfg), "--out", str(Path(tmp) / name)]
    for s in sets:
        args += ["--set", s]
    _cli(*args)
    return Path(tmp) / name


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rehash(step: Path) -> None:
    """Rewrite manifest.json so that it matches the (altered) files: the manifest no longer protects them."""
    (step / "manifest.json").write_text(json.dumps({n: _sha256(step / n) for n in ("state.safetensors", "meta.json")}))


def _truncate(path: Path) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def _step(tmp: Path) -> Path:
    return Path(tmp) / "done" / "checkpoints" / "step_00000002"


def setup_readonly_dir(tmp, paths):
    d = Path(tmp) / "readonly_dir"
    d.mkdir()
    d.chmod(0o555)


def setup_finished_toy_run(tmp, paths):
    _toy_run(tmp)


def setup_corrupt_manifest(tmp, paths):
    _toy_run(tmp)
    (_step(tmp) / "manifest.json").write_text("{this is not json")


def setup_missing_manifest(tmp, paths):
    _toy_run(tmp)
    (_step(tmp) / "manifest.json").unlink()


def setup_truncated_state(tmp, paths):
    _toy_run(tmp)
    _truncate(_step(tmp) / "state.safetensors")


def setup_garbage_state_rehashed(tmp, paths):
    _toy_run(tmp)
    (_step(tmp) / "state.safetensors").write_bytes(b"\x00garbage" * 64)
    _rehash(_step(tmp))


def setup_truncated_state_rehashed(tmp, paths):
    _toy_run(tmp)
    _truncate(_step(tmp) / "state.safetensors")
    _rehash(_step(tmp))


def setup_meta_not_json_rehashed(tmp, paths):
    _toy_run(tmp)
    (_step(tmp) / "meta.json").write_text("{")
    _rehash(_step(tmp))


def setup_meta_empty_rehashed(tmp, paths):
    _toy_run(tmp)
    (_step(tmp) / "meta.json").write_text("{}")
    _rehash(_step(tmp))


def setup_meta_bad_step_rehashed(tmp, paths):
    _toy_run(tmp)
    meta = json.loads((_step(tmp) / "meta.json").read_text())
    meta["step"] = "abc"
    (_step(tmp) / "meta.json").write_text(json.dumps(meta))
    _rehash(_step(tmp))


def setup_state_missing_rng_rehashed(tmp, paths):
    from safetensors.torch import load_file, save_file

    _toy_run(tmp)
    path = _step(tmp) / "state.safetensors"
    tensors = load_file(str(path))
    tensors.pop("rng.torch")
    save_file(tensors, str(path))
    _rehash(_step(tmp))


def setup_latest_points_nowhere(tmp, paths):
    _toy_run(tmp)
    (Path(tmp) / "done" / "checkpoints" / "latest").write_text("step_99999999")


def setup_two_checkpoints_newest_truncated(tmp, paths):
    run = _toy_run(tmp, "done2", "train.checkpoint_every=1")
    _truncate(run / "checkpoints" / "step_00000002" / "state.safetensors")


def setup_run_config_wider(tmp, paths):
    import yaml

    _toy_run(tmp)
    path = Path(tmp) / "done" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["generator"]["hidden"] = 32
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def setup_run_config_garbage(tmp, paths):
    _toy_run(tmp)
    (Path(tmp) / "done" / "config.yaml").write_text("modality: [toy_gmm\n")


def setup_run_config_unknown_key(tmp, paths):
    _toy_run(tmp)
    with open(Path(tmp) / "done" / "config.yaml", "a") as f:
        f.write("bogus: 1\n")


def setup_run_config_empty(tmp, paths):
    _toy_run(tmp)
    (Path(tmp) / "done" / "config.yaml").write_text("")


def _copy_image_teacher(tmp, paths) -> Path:
    dst = Path(tmp) / "teacher"
    shutil.copytree(paths["teacher_image"], dst)
    return dst


def setup_image_teacher_without_scheduler(tmp, paths):
    shutil.rmtree(_copy_image_teacher(tmp, paths) / "scheduler")


def setup_image_scheduler_corrupt(tmp, paths):
    (_copy_image_teacher(tmp, paths) / "scheduler" / "scheduler_config.json").write_text("{not json")


def setup_image_scheduler_unknown_class(tmp, paths):
    path = _copy_image_teacher(tmp, paths) / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "_class_name": "NoSuchScheduler"}))


def setup_image_scheduler_empty_object(tmp, paths):
    (_copy_image_teacher(tmp, paths) / "scheduler" / "scheduler_config.json").write_text("{}")


def setup_image_scheduler_list(tmp, paths):
    (_copy_image_teacher(tmp, paths) / "scheduler" / "scheduler_config.json").write_text("[1, 2]")


def setup_image_scheduler_sigma_max_negative(tmp, paths):
    path = _copy_image_teacher(tmp, paths) / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "sigma_max": -80.0}))


def setup_image_unet_config_corrupt(tmp, paths):
    (_copy_image_teacher(tmp, paths) / "unet" / "config.json").write_text("{not json")


def setup_image_unet_weights_missing(tmp, paths):
    for f in (_copy_image_teacher(tmp, paths) / "unet").glob("*.safetensors"):
        f.unlink()


def setup_image_unet_weights_truncated(tmp, paths):
    for f in (_copy_image_teacher(tmp, paths) / "unet").glob("*.safetensors"):
        _truncate(f)


def setup_image_unet_pickled(tmp, paths):
    """A diffusers folder whose UNet is only a pickled diffusion_pytorch_model.bin."""
    from diffusers import UNet2DModel

    dst = _copy_image_teacher(tmp, paths)
    net = UNet2DModel.from_pretrained(dst / "unet")
    shutil.rmtree(dst / "unet")
    net.save_pretrained(dst / "unet", safe_serialization=False)
    for f in (dst / "unet").glob("*.safetensors"):
        f.unlink()


def _copy_text_teacher(tmp, paths) -> Path:
    dst = Path(tmp) / "mdlm"
    shutil.copytree(paths["teacher_text"], dst)
    return dst


def setup_text_teacher_config_corrupt(tmp, paths):
    (_copy_text_teacher(tmp, paths) / "config.json").write_text("{not json")


def setup_text_teacher_weights_truncated(tmp, paths):
    _truncate(_copy_text_teacher(tmp, paths) / "model.safetensors")


def _copy_pde_teacher(tmp, paths) -> Path:
    dst = Path(tmp) / "pde_teacher"
    shutil.copytree(paths["teacher_pde"], dst)
    return dst


def setup_pde_teacher_without_pde_json(tmp, paths):
    (_copy_pde_teacher(tmp, paths) / "pde.json").unlink()


def setup_pde_teacher_pde_json_corrupt(tmp, paths):
    (_copy_pde_teacher(tmp, paths) / "pde.json").write_text("{not json")


def setup_pde_teacher_pde_json_without_pde(tmp, paths):
    path = _copy_pde_teacher(tmp, paths) / "pde.json"
    info = json.loads(path.read_text())
    info.pop("pde")
    path.write_text(json.dumps(info))


def setup_pde_teacher_without_unet(tmp, paths):
    shutil.rmtree(_copy_pde_teacher(tmp, paths) / "unet")


def setup_pde_teacher_scheduler_corrupt(tmp, paths):
    (_copy_pde_teacher(tmp, paths) / "scheduler" / "scheduler_config.json").write_text("{not json")


def _copy_pde_data(tmp, paths) -> Path:
    dst = Path(tmp) / "data"
    shutil.copytree(Path(paths["teacher_pde"]).parent / "data", dst)
    return dst


def setup_pde_data_meta_corrupt(tmp, paths):
    (_copy_pde_data(tmp, paths) / "meta.json").write_text("{not json")


def setup_pde_data_meta_unknown_pde(tmp, paths):
    path = _copy_pde_data(tmp, paths) / "meta.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "pde": "navier_stokes"}))


def setup_pde_data_meta_without_size(tmp, paths):
    path = _copy_pde_data(tmp, paths) / "meta.json"
    meta = json.loads(path.read_text())
    meta.pop("size")
    path.write_text(json.dumps(meta))


def setup_pde_data_train_missing(tmp, paths):
    (_copy_pde_data(tmp, paths) / "train.npz").unlink()


def setup_pde_data_train_garbage(tmp, paths):
    (_copy_pde_data(tmp, paths) / "train.npz").write_text("this is not an npz file\n")


def setup_pde_data_train_wrong_array(tmp, paths):
    import numpy as np

    path = _copy_pde_data(tmp, paths) / "train.npz"
    with np.load(path) as f:
        fields = f["fields"]
    np.savez(path, x=fields)


def setup_pde_data_train_nan(tmp, paths):
    import numpy as np

    path = _copy_pde_data(tmp, paths) / "train.npz"
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["fields"] = arrays["fields"].copy()
    arrays["fields"].flat[0] = np.nan
    np.savez(path, **arrays)


# ------------------------------------------------------------------ what happens today (filled in from a run)
