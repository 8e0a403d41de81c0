"""Typed, validated trainer configuration.

Resolution order (later wins): the dataclass defaults below (the paper's algorithm and sizes: 64 prompts × 8
responses, 4096-token responses, lr 1e-6, T = 1.2, ε 0.2 / 0.28, no KL, token-mean, conditional truncation
masking with ρ = 0.1 and a 128-token repetition window) < the *preset* < the YAML file given with
``--config`` < ``key=value`` overrides on the command line.

Presets only change sizes, never the algorithm. ``preset=embedded`` (the CPU demo: the embedded tiny problem
set and a tiny model, minutes on a 2-core CPU) applies whenever no preset is named, with or without a
``--config`` file, so a small YAML such as ``total_steps: 3`` changes the demo run and nothing else.
``preset=none`` applies nothing: the paper-scale defaults. A config that brings its own ``model`` or
``train_data`` must name its preset (``preset: none`` or ``preset: embedded``): the demo's sizes (48-token
responses) would silently ruin such a run, and the paper's would silently make it 100× larger.
`resolve_config` also says where each key that differs from the defaults came from; ``microcoder-train``
prints that at the start of every run. The fully resolved config is written to ``RUN_DIR/config.yaml``.

``resume``: ``none`` (start fresh), ``auto`` (the latest checkpoint in ``run_dir``, or in the newest
``runs/<name>-*`` that has one; starts fresh when there is none) or a checkpoint directory
(``RUN_DIR/checkpoints/step_NNNNNN``; an error when it holds no checkpoint).

Imports yaml, the compare-mode registry and ``rl.temperature``; never torch (a config is read before any
model), ``cli`` or ``integrations``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from microcoder_fast.executor.compare.registry import MODES as COMPARE_MODES


class ConfigError(ValueError):
    """A user-caused configuration error; the message names the key and the fix."""


@dataclasses.dataclass
class TrainConfig:
    # --- run -------------------------------------------------------------------------------------------
    name: str = "microcoder-grpo"
    preset: str = "none"  # "embedded" | "none"; see the module docstring
    run_dir: str = ""  # "" -> runs/<name>-<UTC timestamp>
    seed: int = 0
    resume: str = "none"  # "none" | "auto" (latest checkpoint in run_dir, or in the latest runs/<name>-*) | a path
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default
    # --- model -----------------------------------------------------------------------------------------
    model: str = "tiny"  # "tiny" (built locally, no download) or an HF model directory / hub name
    dtype: str = "float32"  # "float32" | "bfloat16"
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    gradient_checkpointing: bool = False
    tiny_hidden_size: int = 128
    tiny_num_layers: int = 4
    tiny_num_heads: int = 4
    tiny_num_kv_heads: int = 2
    tiny_intermediate_size: int = 384
    tiny_vocab_size: int = 512  # byte-level BPE trained locally on the train prompts and reference programs
    # --- data ------------------------------------------------------------------------------------------
    train_data: str = "embedded"  # "embedded" | path to MicroCoder JSONL | "lcb:PATH[:RELEASE]"
    eval_data: str = "embedded"  # "embedded" (its held-out split) | path | "lcb:PATH[:RELEASE]" (e.g. lcb:x.jsonl:v6)
    max_tests_per_problem: int = 16
    eval_max_problems: int = 0  # 0 = all
    # --- judge -----------------------------------------------------------------------------------------
    compare: str = "default"  # a name in microcoder_fast.executor.compare.MODES
    judge_workers: int = 2
    judge_time_limit_s: float = 6.0
    judge_memory_limit_mb: int = 2048
    judge_backend: str = "local"  # "local" (this machine's cores) | "ray" (every node of a Ray cluster)
    judge_address: str = "auto"  # judge_backend=ray: the cluster ("auto": the one `ray start` joined here)
    judge_workers_per_node: int = 0  # judge_backend=ray: sandboxes per node; 0 = the node's CPUs / ranks
    # --- rollouts --------------------------------------------------------------------------------------
    engine: str = "auto"  # "auto" (vLLM when importable, else HF) | "vllm" | "hf"
    train_batch_size: int = 64  # prompts per rollout round
    group_size: int = 8  # responses per prompt
    max_prompt_length: int = 2048
    max_response_length: int = 4096
    eval_max_response_length: int = 8192
    temperature: float = 1.2
    temperature_schedule: str = ""  # staged jumps, e.g. "0.6,1.2@140" (0.6 until step 140, then 1.2); "" = constant
    min_stage_steps: int = 10  # stages shorter than this are a ramp in disguise and refused
    eval_temperature: float = 0.6
    eval_samples: int = 4  # samples per held-out problem for pass@1
    eval_every: int = 10  # steps; 0 = only before and after training
    eval_before: bool = True
    hf_generation_chunk: int = 64  # HF engine: sequences per generate() call (judging overlaps the next chunk)
    vllm_gpu_memory_utilization: float = 0.5
    vllm_tensor_parallel_size: int = 1
    vllm_kv_cache_space_gb: int = 1  # CPU only (VLLM_CPU_KVCACHE_SPACE)
    vllm_enable_prefix_caching: bool = True
    # --- optimisation ----------------------------------------------------------------------------------
    total_steps: int = 200  # RL steps (rollout rounds)
    ppo_mini_batch_size: int = 32  # prompts per optimiser update (train_batch_size / this = updates per round)
    ppo_micro_batch_size: int = 8  # sequences per forward/backward (gradient accumulation)
    # > 0: micro-batches by token budget instead (rows × padded length; verl's dynamic batch size)
    ppo_max_tokens_per_micro_batch: int = 0
    recompute_old_logp: bool = False  # true: a separate old-policy pass for every row, also where it is on-policy
    ppo_epochs: int = 1
    lr: float = 1e-6
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    warmup_steps: int = 0  # linear LR warm-up, in optimiser updates (train_batch_size / ppo_mini_batch_size per RL step)
    lr_schedule: str = "constant"  # "constant" | "cosine"
    grad_clip: float = 1.0
    # --- loss ------------------------------------------------------------------------------------------
    eps_low: float = 0.2
    eps_high: float = 0.28
    kl_coef: float = 0.0  # > 0 loads a frozen reference model
    loss_agg: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum | seq-mean-token-sum-norm
    dual_clip: float = 0.0  # 0 = off; else the dual-clip constant c (> 1) for negative advantages
    # hidden: log-probs from the last hidden states (no logits); fused: response logits + fused loss; logits: oracle
    loss_path: str = "hidden"
    # --- advantages ------------------------------------------------------------------------------------
    adv_std: str = "unbiased"  # "unbiased" | "population" | "none" (Dr. GRPO: no division by the std)
    adv_eps: float = 1e-6
    # --- conditional truncation masking ---------------------------------------------------------------
    truncation_masking: str = "conditional"  # "conditional" | "none" | "all" (mask every truncated response)
    mask_predicate: str = "not_failed"  # "not_failed" (passed or no gradable code) | "correct_only"
    mask_rho: float = 0.1
    repetition_window: int = 128
    # --- diversity and temperature probe ---------------------------------------------------------------
    diversity_metric: str = "pairwise_ngram"  # "pairwise_ngram" | "distinct_ngram"
    diversity_max_n: int = 4
    probe_temperatures: str = "0.6,0.8,1.0,1.2,1.4,1.6,1.8"
    probe_prompts: int = 16
    probe_div_low: float = 0.6
    probe_div_high: float = 0.85
    probe_min_code_rate: float = 0.5
    # --- supervised warm-up (a separate stage, off unless sft_steps > 0) --------------------------------
    sft_steps: int = 0
    sft_batch_size: int = 16
    sft_lr: float = 3e-3
    # --- logging and checkpoints -----------------------------------------------------------------------
    save_every: int = 50  # steps; 0 = only at the end
    keep_checkpoints: int = 2
    log_completions: int = 4  # completions per step written to completions.jsonl
    tensorboard: bool = False
    progress: bool = True


PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    # A CPU laptop: the embedded problem set, the tiny model, short responses, a handful of minutes.
    "embedded": {
        "name": "embedded",
        "model": "tiny",
        "temperature": 1.0,
        # one torch thread: the judge's workers use the other core while the policy trains/generates, and
        # OpenMP with 2 threads on a busy 2-core machine thrashes (measured 10x slower steps)
        "threads": 1,
        "train_data": "embedded",
        "eval_data": "embedded",
        "train_batch_size": 16,
        "group_size": 8,
        "max_prompt_length": 256,
        "max_response_length": 48,
        "eval_max_response_length": 64,
        "repetition_window": 8,
        "ppo_mini_batch_size": 8,
        "ppo_micro_batch_size": 64,
        # 60 GRPO steps: the policy gains slowly per step (above ~3e-4 the tiny model's policy collapses), and
        # with seed 0, 40 steps left the held-out gain at about 3.5 sampling s.e., 60 reach about 9 (README)
        "total_steps": 60,
        "lr": 2e-4,
        "warmup_steps": 20,  # optimiser updates (10 RL steps): the first full-size Adam steps cost held-out pass@1
        "weight_decay": 0.0,
        "eval_every": 20,
        # 40 held-out problems (24 new statements of trained tasks, 16 unseen combinations; data/embedded.py)
        # x 16 samples: the sampling standard error of pass@1 (logged as pass@1_se) is ~0.01-0.02 at the
        # pass rates seen here; with 4 samples it was ~0.03, as large as the effects measured
        "eval_samples": 16,
        "eval_max_problems": 0,
        "eval_temperature": 1.0,
        # the warm-up reaches train pass ~0.5 at T 1.0: 150 steps left it at ~0.15 (too few rewards for
        # GRPO), 250 at ~0.75 (little left to learn)
        "sft_steps": 200,
        "sft_batch_size": 16,
        "sft_lr": 3e-3,
        "save_every": 0,
        "judge_workers": 2,
        "judge_time_limit_s": 4.0,
        "probe_prompts": 8,
    },
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "preset": tuple(PRESETS),
    "dtype": ("float32", "bfloat16"),
    "device": ("auto", "cpu", "cuda"),
    "compare": COMPARE_MODES,
    "engine": ("auto", "vllm", "hf"),
    "judge_backend": ("local", "ray"),
    "lr_schedule": ("constant", "cosine"),
    "loss_agg": ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"),
    "loss_path": ("hidden", "fused", "logits"),
    "adv_std": ("unbiased", "population", "none"),
    "truncation_masking": ("conditional", "none", "all"),
    "mask_predicate": ("not_failed", "correct_only"),
    "diversity_metric": ("pairwise_ngram", "distinct_ngram"),
}

# What each key means, for `--help-config`; a key not listed here is described by its inline comment in
# `TrainConfig` (tests check that every key has one or the other).
_KEY_HELP: dict[str, str] = {
    "name": "run name; run directories are runs/<name>-<UTC timestamp>",
    "preset": "sizes to start from: embedded (the CPU demo, used when no preset is named) or none (the paper's)",
    "run_dir": "where checkpoints, metrics.jsonl and config.yaml go; empty: runs/<name>-<UTC timestamp>",
    "resume": "none: start fresh; auto: the latest checkpoint in run_dir, or in the newest runs/<name>-* "
              "that has one (fresh when there is none); or a checkpoint directory RUN_DIR/checkpoints/step_NNNNNN",
    "dtype": "compute dtype (master weights stay float32)",
    "device": "auto: cuda when available, else cpu",
    "engine": "rollout engine: auto (vLLM when it imports, else HF generate), vllm or hf",
    "compare": "how the judge compares outputs (the reward's judge); see microcoder-eval --compare",
    "train_data": "training problems: embedded, a MicroCoder JSONL path, or lcb:PATH[:RELEASE]",
    "eval_data": "held-out problems: embedded (its held-out split), a path, or lcb:PATH[:RELEASE] (e.g. lcb:x.jsonl:v6)",
    "eval_max_problems": "evaluate on at most this many held-out problems, spread evenly (0 = all)",
    "eval_every": "evaluate every this many RL steps (0 = only before and after training)",
    "save_every": "checkpoint every this many RL steps (0 = only at the end)",
    "lr_schedule": "learning-rate schedule after the warm-up",
    "loss_agg": "how token losses are averaged: over all tokens, or per sequence then over sequences",
    "loss_path": "how log-probs and the loss are computed: hidden (from the last hidden states and the LM head "
                 "weight, no logits; falls back to fused, with a log line, for a head that is not plain linear), "
                 "fused (logits of response positions only + fused loss with in-place backward), logits (oracle)",
    "ppo_max_tokens_per_micro_batch": "> 0: group each mini-batch's sequences into micro-batches of at most this "
                                      "many padded tokens (sorted by length) instead of ppo_micro_batch_size rows",
    "recompute_old_logp": "false: the first mini-batch's old log-probs come from its own forward (on-policy); "
                          "true: a separate old-policy pass over every row",
    "diversity_metric": "output diversity measure used by probe-temperature and logged each step",
    "seed": "seed of torch, numpy and Python's random (sampling, masking draws, the tiny model's init)",
    "gradient_checkpointing": "recompute activations in the backward pass (less memory, ~30% more time)",
    "tiny_hidden_size": "model=tiny: hidden size",
    "tiny_num_layers": "model=tiny: transformer layers",
    "tiny_num_heads": "model=tiny: attention heads (head_dim = hidden / heads must be >= 32 for vLLM-CPU)",
    "tiny_num_kv_heads": "model=tiny: key/value heads (grouped-query attention)",
    "tiny_intermediate_size": "model=tiny: MLP width",
    "max_tests_per_problem": "tests judged per problem and rollout (a deterministic subset when there are more)",
    "judge_workers": "parallel sandboxes judging rollouts",
    "judge_time_limit_s": "seconds per test (CPU and wall clock)",
    "judge_memory_limit_mb": "MiB per judged program",
    "judge_backend": "local: judge on this machine (judge_workers sandboxes); ray: on every node of the Ray "
                     "cluster at judge_address (needs the ray extra; README: The judge on a Ray cluster)",
    "judge_address": "judge_backend=ray: the Ray cluster's address (auto: the one this machine joined with "
                     "`ray start`; or HEAD_IP:6379)",
    "judge_workers_per_node": "judge_backend=ray: sandboxes per node (0: the node's CPUs divided among the "
                              "training ranks)",
    "max_prompt_length": "prompts longer than this (tokens) are skipped, with a count in the log",
    "max_response_length": "training rollouts stop here (tokens); such responses are 'truncated'",
    "eval_max_response_length": "evaluation samples stop here (tokens)",
    "temperature": "training sampling temperature; log-probs use logits / T (see probe-temperature)",
    "eval_temperature": "sampling temperature of the held-out evaluations",
    "eval_before": "evaluate once before any training (the 'before RL' numbers)",
    "vllm_gpu_memory_utilization": "GPU share vLLM may take (colocated with training)",
    "vllm_tensor_parallel_size": "GPUs per vLLM engine",
    "vllm_enable_prefix_caching": "vLLM prefix caching (the prompt of a group is computed once)",
    "ppo_epochs": "passes over each rollout round's batch",
    "lr": "learning rate of the GRPO updates (AdamW)",
    "weight_decay": "AdamW weight decay",
    "adam_beta1": "AdamW beta1",
    "adam_beta2": "AdamW beta2",
    "grad_clip": "clip the gradient's global norm to this",
    "eps_low": "lower clip range: ratio >= 1 - eps_low",
    "eps_high": "upper clip range: ratio <= 1 + eps_high (clip-higher)",
    "adv_eps": "added to the group std before dividing",
    "mask_rho": "conditional truncation masking: probability that an eligible truncated response is masked",
    "repetition_window": "tokens compared to detect a repetition loop (last window == the one before)",
    "diversity_max_n": "largest n-gram order of the diversity metric",
    "probe_temperatures": "probe-temperature: comma-separated temperatures to measure",
    "probe_prompts": "probe-temperature: prompts sampled per temperature",
    "probe_div_low": "probe-temperature: lowest acceptable diversity",
    "probe_div_high": "probe-temperature: highest acceptable diversity",
    "probe_min_code_rate": "probe-temperature: least share of samples that must hold code",
    "sft_steps": "supervised warm-up steps on reference solutions before GRPO (0 = none)",
    "sft_batch_size": "supervised warm-up: sequences per step",
    "sft_lr": "supervised warm-up: learning rate",
    "keep_checkpoints": "checkpoints kept in RUN_DIR/checkpoints (older ones are deleted; 0 = keep all)",
    "tensorboard": "also write TensorBoard events to RUN_DIR/tb",
    "progress": "progress bars and per-step lines on the terminal (false: quiet; metrics.jsonl is written either way)",
}

# Keys whose own value makes a run that is not the demo: a config setting one must name its preset.
_NEEDS_PRESET = ("model", "train_data")


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


# keys that were renamed or replaced: the message says what to write now
_REPLACED: dict[str, str] = {
    "fused_loss": "it was replaced by loss_path (hidden: log-probs from hidden states, the default; fused: "
                  "response logits + the fused loss; logits: the full-logits oracle)",
}


def _unknown_key_error(key: str, where: str) -> ConfigError:
    if key in _REPLACED:
        return ConfigError(f"config key {key!r} ({where}): {_REPLACED[key]}")
    names = list(_field_types())
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see `microcoder-train --help-config`"
    return ConfigError(f"unknown config key {key!r} ({where}){hint}")


def _coerce(key: str, value: Any, where: str) -> Any:
    typ = _field_types()[key]
    if isinstance(typ, types.UnionType):  # not used today; keep the door open
        typ = typing.get_args(typ)[0]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"config key {key!r} ({where}) must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and _is_int(value))):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key {key!r} ({where}) must be an integer, got {value!r}")
        return int(value)
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} ({where}) must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r} ({where}) must be a number, got {value!r}") from None
    if typ is str:
        if value is None:
            return ""
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return str(value)
    raise AssertionError(f"unhandled config type {typ} for {key}")


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}``; a malformed item is a clear error."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"bad override {item!r}: write key=value (e.g. temperature=1.2)")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def _read_config_file(config_file: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(config_file)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass an existing YAML file to --config")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of key: value, got {type(loaded).__name__}")
    return dict(loaded)


def resolve_config(config_file: str | os.PathLike[str] | None = None,
                   overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, dict[str, str]]:
    """Resolve defaults < preset < ``config_file`` < ``overrides`` into a validated `TrainConfig`, and say
    where each key that differs from the dataclass default, or that the file or command line names, came from
    (``"preset embedded"``, the file's name, ``"command line"``)."""
    file_values = _read_config_file(config_file) if config_file is not None else {}
    overrides = dict(overrides or {})
    known = _field_types()
    for source, values in ((f"in {config_file}", file_values), ("on the command line", overrides)):
        for k in values:
            if k not in known:
                raise _unknown_key_error(k, source)
    named = overrides.get("preset", file_values.get("preset"))
    preset_name = "embedded" if named is None else str(named)
    if preset_name not in PRESETS:
        raise ConfigError(f"unknown preset {preset_name!r}; choose one of {sorted(PRESETS)}")
    if named is None:
        own = [k for k in _NEEDS_PRESET
               if str({**file_values, **overrides}.get(k, PRESETS["embedded"][k])) != str(PRESETS["embedded"][k])]
        for key in ("train_data", "eval_data"):  # a missing data file is the first thing to fix
            spec = overrides.get(key, file_values.get(key))
            if own and spec is not None and (err := _missing_data(key, str(spec))) is not None:
                raise err
        if own:
            raise ConfigError(
                f"{' and '.join(own)} set but no preset named: add preset=none for the paper's sizes (64 prompts x 8, "
                "4096-token responses, lr 1e-6) or preset=embedded for the CPU demo's (16 x 8, 48 tokens, lr 2e-4)")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in ((f"preset {preset_name}", PRESETS[preset_name]), (str(config_file), file_values),
                          ("command line", overrides)):
        values.update(layer)
        sources.update(dict.fromkeys(layer, source))
    values["preset"] = preset_name
    cfg = TrainConfig(**{k: _coerce(k, v, "resolved") for k, v in values.items()})
    validate(cfg)
    defaults = TrainConfig()
    given = set(file_values) | set(overrides)  # named by the user: listed even when equal to the default
    differ = {f.name: sources.get(f.name, "preset " + preset_name) for f in dataclasses.fields(TrainConfig)
              if getattr(cfg, f.name) != getattr(defaults, f.name) or f.name in given}
    return cfg, differ


def load_config(config_file: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Resolve defaults < preset < ``config_file`` < ``overrides`` into a validated `TrainConfig`."""
    return resolve_config(config_file, overrides)[0]


def describe_resolution(cfg: TrainConfig, sources: dict[str, str]) -> str:
    """The preset in use and the keys that differ from the defaults, grouped by where they came from."""
    by_source: dict[str, list[str]] = {}
    for k, src in sources.items():
        if k != "preset":
            by_source.setdefault(src, []).append(f"{k}={getattr(cfg, k)}")
    what = {"embedded": "the CPU demo's sizes", "none": "the paper's sizes"}.get(cfg.preset, "")
    lines = [f"config: preset {cfg.preset} ({what}); keys that differ from the defaults or were given:" if by_source
             else f"config: preset {cfg.preset} ({what}); every key at its default"]
    lines += [f"  from {src}: " + " ".join(items) for src, items in by_source.items()]
    return "\n".join(lines)


def validate(cfg: TrainConfig) -> None:
    """Raise `ConfigError` naming the key and the fix for any inconsistent setting."""
    for key, choices in _CHOICES.items():
        v = getattr(cfg, key)
        if v not in choices:
            raise ConfigError(f"config key {key!r} = {v!r} is not one of {list(choices)}")
    positive = ["train_batch_size", "group_size", "max_prompt_length", "max_response_length",
                "eval_max_response_length", "ppo_mini_batch_size", "ppo_micro_batch_size", "ppo_epochs",
                "judge_workers", "max_tests_per_problem", "eval_samples", "repetition_window",
                "diversity_max_n", "probe_prompts", "hf_generation_chunk", "sft_batch_size",
                "vllm_tensor_parallel_size", "tiny_hidden_size", "tiny_num_layers", "tiny_num_heads",
                "tiny_num_kv_heads", "tiny_intermediate_size"]
    if cfg.tiny_vocab_size < 300:
        raise ConfigError(f"tiny_vocab_size must be >= 300 (256 bytes + specials + merges), got {cfg.tiny_vocab_size}")
    for key in positive:
        if getattr(cfg, key) < 1:
            raise ConfigError(f"config key {key!r} must be >= 1, got {getattr(cfg, key)}")
    for key in ["ppo_max_tokens_per_micro_batch", "total_steps", "sft_steps", "eval_every", "save_every",
                "warmup_steps", "threads", "eval_max_problems", "log_completions", "keep_checkpoints",
                "min_stage_steps", "judge_workers_per_node"]:
        if getattr(cfg, key) < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {getattr(cfg, key)}")
    if cfg.judge_backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError('judge_backend=ray needs ray, which is not installed: pip install "microcoder_fast[ray]" '
                          "(or judge_backend=local)")
    if cfg.train_batch_size % cfg.ppo_mini_batch_size:
        raise ConfigError(
            f"train_batch_size {cfg.train_batch_size} is not divisible by ppo_mini_batch_size "
            f"{cfg.ppo_mini_batch_size}: each rollout round must split into whole mini-batches "
            f"(try ppo_mini_batch_size={_divisor_hint(cfg.train_batch_size, cfg.ppo_mini_batch_size)})"
        )
    seqs = cfg.ppo_mini_batch_size * cfg.group_size
    if seqs % cfg.ppo_micro_batch_size and cfg.ppo_micro_batch_size < seqs:
        raise ConfigError(
            f"ppo_mini_batch_size × group_size = {seqs} sequences is not divisible by ppo_micro_batch_size "
            f"{cfg.ppo_micro_batch_size}: pick a micro-batch that divides {seqs} "
            f"(e.g. {_divisor_hint(seqs, cfg.ppo_micro_batch_size)})"
        )
    if not 0.0 <= cfg.eps_low < 1.0 or cfg.eps_high < 0.0:
        raise ConfigError(f"eps_low must be in [0, 1) and eps_high >= 0, got {cfg.eps_low}, {cfg.eps_high}")
    if cfg.kl_coef < 0:
        raise ConfigError(f"kl_coef must be >= 0, got {cfg.kl_coef}")
    if cfg.dual_clip and cfg.dual_clip <= 1.0:
        raise ConfigError(f"dual_clip must be 0 (off) or > 1, got {cfg.dual_clip}")
    if not 0.0 <= cfg.mask_rho <= 1.0:
        raise ConfigError(f"mask_rho is a probability; it must be in [0, 1], got {cfg.mask_rho}")
    for key in ("temperature", "eval_temperature"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{key} must be > 0 (log-probs use logits / T), got {getattr(cfg, key)}")
    if cfg.lr <= 0 or cfg.sft_lr <= 0:
        raise ConfigError(f"lr and sft_lr must be > 0, got {cfg.lr}, {cfg.sft_lr}")
    if cfg.adv_eps < 0:
        raise ConfigError(f"adv_eps must be >= 0, got {cfg.adv_eps}")
    if not 0 < cfg.vllm_gpu_memory_utilization <= 1:
        raise ConfigError(f"vllm_gpu_memory_utilization must be in (0, 1], got {cfg.vllm_gpu_memory_utilization}")
    from microcoder_fast.rl.temperature import TemperatureSchedule, parse_grid

    try:
        TemperatureSchedule.parse(cfg.temperature_schedule, cfg.temperature, cfg.min_stage_steps)
        parse_grid(cfg.probe_temperatures)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.probe_div_low > cfg.probe_div_high:
        raise ConfigError(f"probe_div_low {cfg.probe_div_low} must be <= probe_div_high {cfg.probe_div_high}")


def data_file(spec: str) -> Path | None:
    """The file a ``train_data`` / ``eval_data`` value names: ``None`` for ``embedded``, PATH for
    ``lcb:PATH[:RELEASE]``, else the value itself."""
    if spec == "embedded":
        return None
    if spec.startswith("lcb:"):
        return Path(spec.split(":")[1])
    return Path(spec)


def _missing_data(key: str, spec: str) -> ConfigError | None:
    f = data_file(spec)
    if f is None or f.is_file():
        return None
    return ConfigError(f"{key}={spec!r}: no such file {str(f)!r}; give an existing problem file, "
                       "lcb:PATH[:RELEASE] or embedded")


def check_inputs(cfg: TrainConfig) -> None:
    """Raise `ConfigError` (one line naming the key and the fix) when a file the run needs is missing; run
    before anything is created, so a mistyped path leaves no run directory behind."""
    for key in ("train_data", "eval_data"):
        if (err := _missing_data(key, getattr(cfg, key))) is not None:
            raise err
    if cfg.resume not in ("none", "auto"):
        if cfg.resume.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            raise ConfigError(f"resume={cfg.resume!r}: resume takes none, auto (continue the latest run) or a "
                              "checkpoint directory; write resume=auto")
        if not (Path(cfg.resume) / "state.json").is_file():
            raise ConfigError(f"resume={cfg.resume!r}: no checkpoint there (no state.json); give "
                              "RUN_DIR/checkpoints/step_NNNNNN or resume=auto")


def _divisor_hint(n: int, near: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - near), d))


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def key_help() -> dict[str, str]:
    """Each key's meaning: its `_KEY_HELP` entry, else its inline comment in `TrainConfig` ("" when neither)."""
    import inspect
    import io
    import tokenize

    comments: dict[str, str] = {}
    src = inspect.getsource(TrainConfig)
    current = None
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and current is None:
            current = tok.string
        elif tok.type == tokenize.COMMENT and current is not None:
            comments[current] = tok.string.lstrip("# ").strip()
        elif tok.type == tokenize.NEWLINE:
            current = None
    return {f.name: _KEY_HELP.get(f.name) or comments.get(f.name, "") for f in dataclasses.fields(TrainConfig)}


def describe_keys() -> str:
    """Every key for ``--help-config``: type, default, accepted values, what the no-argument preset sets, and
    what it means; the resolution order and the presets first."""
    helps = key_help()
    lines = [__doc__.strip(), "",
             "KEY (TYPE) = DEFAULT [no-argument run: VALUE]  accepted values  -- meaning", ""]
    for f in dataclasses.fields(TrainConfig):
        t = _field_types()[f.name].__name__
        choices = f"  one of {', '.join(_CHOICES[f.name])}" if f.name in _CHOICES else ""
        demo = PRESETS["embedded"].get(f.name, "embedded" if f.name == "preset" else None)
        demo_s = f" [no-argument run: {demo!r}]" if demo is not None else ""
        lines.append(f"  {f.name} ({t}) = {f.default!r}{demo_s}{choices}  -- {helps[f.name]}")
    return "\n".join(lines)
