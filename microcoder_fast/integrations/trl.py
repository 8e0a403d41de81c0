"""TRL adapter: a code reward for ``GRPOTrainer(reward_funcs=[...])``, our LM head and our loss inside TRL.

- ``CodeReward``: TRL calls it with ``prompts``, ``completions`` (plain strings or conversational message
  lists), ``completion_ids`` and every dataset column as keyword arguments; it reads the tests from one
  named column (our MicroCoder encoding or LiveCodeBench's, see ``_judge.problem_from_column``), extracts
  the program from each completion, judges the whole batch with one persistent executor and returns one
  float per completion (1.0 iff every test passes; None, TRL's "unscorable", when the judge itself failed: IE). The verdict mix goes to TRL's ``log_metric`` hook as
  ``verdict/AC``, ``verdict/WA``, ... ``verdict/NO_CODE``.
- ``use_linear_token_logprobs(model, temperature)``: replaces the tiled plain-torch LM head TRL 1.16 patches
  into the model (``add_fused_lm_head``) with ``ops.linear_token_logprobs`` (Triton on CUDA, our chunked
  path on CPU): ``model(..., labels=..., fused_lm_head=True)`` keeps returning per-token log-probs and
  entropy without the [tokens, vocab] logits.
- ``MicroCoderGRPOTrainer``: ``GRPOTrainer`` with that head and the loss computed by ``ops.grpo_loss`` for
  ``loss_type`` grpo, dapo, bnpo and dr_grpo (TRL's normalisers, gradient accumulation included), plus
  optional MicroCoder conditional truncation masking (``rl.masking.truncation_mask``). Options it cannot
  express are refused when the trainer is built, never approximated.

Imports torch, TRL, ops, rl.masking and the shared judge (_judge); never verl.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from microcoder_fast import ops
from microcoder_fast.integrations._judge import BatchJudge, verdict_mix
from microcoder_fast.rl.masking import truncation_mask

try:
    from trl import GRPOTrainer
    from trl.trainer.utils import FusedCausalLMOutput
except ImportError as e:  # pragma: no cover - exercised only without TRL
    raise ImportError(
        "microcoder_fast.integrations.trl needs TRL >= 1.16: pip install 'trl>=1.16' (or the project's test extra)"
    ) from e

__all__ = ["SUPPORTED_LOSS_TYPES", "CodeReward", "MicroCoderGRPOTrainer", "TruncationMasking",
           "check_supported", "use_linear_token_logprobs"]

SUPPORTED_LOSS_TYPES = ("grpo", "dapo", "bnpo", "dr_grpo")


def _text(completion: Any) -> str:
    """A TRL completion: a string, or a conversational list of messages (the assistant turns are joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        content = completion.get("content", "")
        return content if isinstance(content, str) else "".join(
            part.get("text", "") for part in content if isinstance(part, Mapping))
    if isinstance(completion, Sequence):
        turns = [m for m in completion if isinstance(m, Mapping) and m.get("role", "assistant") == "assistant"]
        return "\n".join(_text(m) for m in turns)
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


class CodeReward:
    """A TRL reward function: 1.0 iff the program in the completion passes every test of its row.

    Args:
        tests_column: the dataset column holding each prompt's tests.
        tests_format: ``"microcoder"`` (``{"inputs", "outputs", "fn_name"}``) or ``"lcb"`` (LiveCodeBench's
            ``private_test_cases`` encoding; ``public_test_cases`` and ``metadata`` are read from the row).
        executor: any object with the executor's ``submit`` (the local ``Executor``, the Ray one); the caller
            keeps ownership. None starts a local ``Executor`` with ``workers``/``time_limit_s``/... on first use.
        max_tests, compare, workers, time_limit_s, memory_limit_mb: as in ``rl.rewards.RewardJudge``.

    ``last_outcomes`` holds the batch's outcomes (``pass``/``fail``/``no_code`` with the verdict), which
    ``MicroCoderGRPOTrainer`` reads for conditional truncation masking.
    """

    def __init__(self, tests_column: str = "tests", tests_format: str = "microcoder", executor: Any = None,
                 *, max_tests: int | None = 16, compare: str = "default", workers: int = 2,
                 time_limit_s: float = 6.0, memory_limit_mb: int = 2048) -> None:
        self.__name__ = "code_reward"  # TRL names the reward's metrics after it
        self.tests_column = tests_column
        self._judge = BatchJudge(executor, tests_format=tests_format, tests_column=tests_column,
                                 workers=workers, time_limit_s=time_limit_s, memory_limit_mb=memory_limit_mb,
                                 compare=compare, max_tests=max_tests)
        self.last_outcomes: list = []

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                 completion_ids: Sequence[Any] | None = None, **kwargs: Any) -> list[float | None]:
        if completions is None:
            raise TypeError("CodeReward needs completions= (TRL passes prompts, completions and the dataset columns)")
        column = kwargs.get(self.tests_column)
        if column is None:
            present = sorted(k for k in kwargs if k not in ("trainer_state", "log_metric", "log_extra"))
            raise KeyError(
                f"CodeReward: no dataset column {self.tests_column!r} among the reward kwargs {present}; "
                "add the tests to the dataset or pass tests_column= naming the column that holds them"
            )
        if len(column) != len(completions):
            raise ValueError(f"column {self.tests_column!r} has {len(column)} values for {len(completions)} completions")
        keys = [k for k in kwargs if isinstance(kwargs[k], list) and len(kwargs[k]) == len(completions)]
        problems = [self._judge.problem(v, {k: kwargs[k][i] for k in keys}) for i, v in enumerate(column)]
        outcomes = self._judge.outcomes([_text(c) for c in completions], problems)
        self.last_outcomes = outcomes
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            for verdict, frac in verdict_mix(outcomes).items():
                log_metric(f"verdict/{verdict}", frac)
        # IE = the judge failed, not the program: None tells TRL the completion could not be scored
        return [None if o.verdict == "IE" else o.reward for o in outcomes]

    def close(self) -> None:
        self._judge.close()


# ---- the LM head -----------------------------------------------------------------------------------------

_SCALE_ATTRS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                "logits_scaling")


def use_linear_token_logprobs(model: Any, temperature: float = 1.0, cast_lm_head_to_fp32: bool = False) -> Any:
    """Patch ``model`` so ``model(..., labels=labels, fused_lm_head=True)`` scores the labels with
    ``ops.linear_token_logprobs`` (log softmax(hidden @ W.T / T)[label] and the entropy, fp32, no logits
    tensor). Called after TRL's own ``add_fused_lm_head`` it takes that head's place; other calls
    (generation, ``fused_lm_head=False``) go to the forward it wraps. Returns ``model``.

    Refused (ValueError): an LM head with a bias, and logit soft-capping or scaling (Gemma-2, Granite, ...):
    the op computes plain ``hidden @ W.T / T``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    text_config = model.config.get_text_config()
    for attr in _SCALE_ATTRS:
        value = getattr(text_config, attr, None)
        if value is not None and value != 1.0 and not (attr == "final_logit_softcapping" and value == 0):
            raise ValueError(
                f"use_linear_token_logprobs: the model's config sets {attr}={value!r}; ops.linear_token_logprobs "
                "computes plain hidden @ W.T / T, so keep TRL's own head for this model"
            )
    head = model.get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        raise ValueError("use_linear_token_logprobs: the LM head must be a bias-free linear layer (lm_head.weight only)")
    wrapped = model.forward

    @functools.wraps(type(model).forward)
    def forward(self: Any, *args: Any, fused_lm_head: bool = False, labels: Any = None, shift_labels: Any = None,
                num_items_in_batch: Any = None, **kwargs: Any) -> Any:
        if not fused_lm_head:
            for name, value in (("labels", labels), ("shift_labels", shift_labels),
                                ("num_items_in_batch", num_items_in_batch)):
                if value is not None:
                    kwargs[name] = value
            return wrapped(*args, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        lm_head = self.get_output_embeddings()
        weight = lm_head.weight
        if hasattr(weight, "full_tensor"):  # FSDP2 DTensor: gather the head once
            weight = weight.full_tensor()
        hidden = hidden.to(weight.device)
        labels = labels.to(weight.device)
        mask = labels != -100
        h = hidden[mask]
        ctx: Any = nullcontext()
        if cast_lm_head_to_fp32:
            h, weight = h.float(), weight.float()
            ctx = torch.autocast(h.device.type, enabled=False)
        elif torch.is_autocast_enabled(h.device.type):  # mixed precision: the head's GEMMs in the autocast dtype
            dtype = torch.get_autocast_dtype(h.device.type)
            h, weight = h.to(dtype), weight.to(dtype)
        elif h.dtype != weight.dtype:
            h = h.to(weight.dtype)
        with ctx:
            logp, entropy = ops.linear_token_logprobs(h, weight, labels[mask], temperature, return_entropy=True)
        log_probs = logp.new_zeros(mask.shape).masked_scatter(mask, logp)
        entropy = entropy.new_zeros(mask.shape).masked_scatter(mask, entropy)
        denom = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / denom, log_probs=log_probs, entropy=entropy,
                                   label_mask=mask)

    model.forward = types.MethodType(forward, model)
    return model


# ---- the loss ----------------------------------------------------------------------------------------------

def check_supported(args: Any) -> None:
    """Raise ValueError naming every GRPOConfig option ``MicroCoderGRPOTrainer`` cannot express."""
    problems = []
    if args.loss_type not in SUPPORTED_LOSS_TYPES:
        problems.append(f"loss_type={args.loss_type!r} (supported: {', '.join(SUPPORTED_LOSS_TYPES)})")
    if getattr(args, "importance_sampling_level", "token") != "token":
        problems.append(f"importance_sampling_level={args.importance_sampling_level!r} (only 'token')")
    if getattr(args, "delta", None) is not None:
        problems.append(f"delta={args.delta!r} (two-sided clipping)")
    if getattr(args, "beta", 0.0) != 0.0:
        problems.append(f"beta={args.beta!r} (the KL term; MicroCoder-GRPO trains without it)")
    if getattr(args, "top_entropy_quantile", 1.0) < 1.0:
        problems.append(f"top_entropy_quantile={args.top_entropy_quantile!r} (entropy masking)")
    if getattr(args, "off_policy_mask_threshold", None) is not None:
        problems.append(f"off_policy_mask_threshold={args.off_policy_mask_threshold!r}")
    if getattr(args, "entropy_coef", 0.0) != 0.0 or getattr(args, "use_adaptive_entropy", False):
        problems.append("entropy_coef / use_adaptive_entropy (the entropy bonus)")
    if getattr(args, "use_vllm", False) and getattr(args, "vllm_importance_sampling_correction", False):
        problems.append("use_vllm with vllm_importance_sampling_correction=True (set it False)")
    if getattr(args, "use_liger_kernel", False):
        problems.append("use_liger_kernel=True (this trainer brings its own head)")
    if problems:
        raise ValueError(
            "MicroCoderGRPOTrainer cannot express " + "; ".join(problems)
            + ": change these options or use trl.GRPOTrainer"
        )


@dataclass
class TruncationMasking:
    """MicroCoder's conditional truncation masking (see ``rl.masking``): a completion that hit
    ``max_completion_length``, is not judged wrong and is not a repetition loop has its advantage zeroed
    with probability ``rho``. Needs a ``CodeReward`` among the reward functions (it supplies the outcomes)."""

    rho: float = 0.1
    window: int = 128
    predicate: str = "not_failed"
    mode: str = "conditional"
    seed: int = 0


class MicroCoderGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` whose log-probs come from ``ops.linear_token_logprobs`` and whose loss is
    ``ops.grpo_loss`` (TRL's normalisation for grpo / dapo / bnpo / dr_grpo). Extra keyword argument:
    ``truncation_masking`` (a ``TruncationMasking``, a dict of its fields, or None = off)."""

    def __init__(self, *args: Any, truncation_masking: TruncationMasking | Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        cfg = kwargs.get("args") if "args" in kwargs else (args[2] if len(args) > 2 else None)
        if cfg is not None:
            check_supported(cfg)
        if isinstance(truncation_masking, Mapping):
            truncation_masking = TruncationMasking(**truncation_masking)
        if truncation_masking is not None and cfg is not None and getattr(cfg, "mask_truncated_completions", False):
            raise ValueError("truncation_masking and mask_truncated_completions=True both mask truncated completions; "
                             "keep one")
        super().__init__(*args, **kwargs)
        check_supported(self.args)
        if self.aux_loss_enabled:
            raise ValueError("MicroCoderGRPOTrainer does not add the MoE router aux loss; use trl.GRPOTrainer")
        self.truncation_masking = truncation_masking
        if truncation_masking is not None:
            if not any(isinstance(f, CodeReward) for f in self.reward_funcs):
                raise ValueError("truncation_masking needs a CodeReward among reward_funcs (it supplies the "
                                 "pass / fail / no_code outcome of each completion)")
            self._mask_generator = torch.Generator().manual_seed(int(truncation_masking.seed))
        target = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        use_linear_token_logprobs(target, self.temperature, self.args.cast_lm_head_to_fp32)
        if self.ref_model is not None:
            use_linear_token_logprobs(self.ref_model, self.temperature, self.args.cast_lm_head_to_fp32)

    def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
        out = super()._generate_and_score_completions(inputs)
        tm = self.truncation_masking
        if tm is None or not self.model.training:
            return out
        reward = next(f for f in self.reward_funcs if isinstance(f, CodeReward))
        ids, cmask = out["completion_ids"], out["completion_mask"]
        lengths = cmask.sum(-1).tolist()
        responses = [row[:n].tolist() for row, n in zip(ids, lengths)]
        stop = {*self.eos_token_ids, self._tokenizer.pad_token_id}  # TRL's own truncation test
        truncated = [not r or r[-1] not in stop for r in responses]
        outcomes = [o.outcome for o in reward.last_outcomes]
        if len(outcomes) != len(responses):
            raise RuntimeError(f"truncation masking: {len(outcomes)} outcomes for {len(responses)} completions")
        res = truncation_mask(responses, truncated, outcomes, mode=tm.mode, predicate=tm.predicate, rho=tm.rho,
                              window=tm.window, generator=self._mask_generator)
        keep = (~res.mask).to(out["advantages"].dtype).to(out["advantages"].device)
        out["advantages"] = out["advantages"] * (keep if out["advantages"].dim() == 1 else keep.unsqueeze(1))
        for name, value in res.rates().items():
            self._metrics["train"][f"masking/{name}"].append(value)
        return out

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]
        extra = {k: inputs.get(k) for k in (
            "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes", "num_tiles",
            "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")}
        logp, entropies, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True, **extra)
        old = inputs.get("old_per_token_logps")
        old = logp.detach() if old is None else old
        mode = "train" if self.model.training else "eval"
        accum = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        common = dict(eps_low=self.epsilon_low, eps_high=self.epsilon_high, entropy=entropies)
        adv = inputs["advantages"]
        if self.loss_type == "grpo":
            # TRL averages over every sequence (fully masked ones count as 0); ours leaves those out: rescale.
            loss, m = ops.grpo_loss(logp, old, adv, mask, agg="seq-mean-token-mean", **common)
            loss = loss * ((mask.sum(-1) > 0).sum() / mask.shape[0]) / accum
        elif self.loss_type == "bnpo":
            loss, m = ops.grpo_loss(logp, old, adv, mask, agg="token-mean", **common)
            loss = loss / accum
        elif self.loss_type == "dr_grpo":
            loss, m = ops.grpo_loss(logp, old, adv, mask, agg="seq-mean-token-sum-norm",
                                    max_len=self.max_completion_length, **common)
            loss = loss / accum
        elif self.loss_type == "dapo":
            loss, m = ops.grpo_loss(logp, old, adv, mask, agg="token-sum", **common)
            normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
            loss = loss / normalizer
        else:  # check_supported ran at construction; a loss_type changed afterwards lands here
            raise ValueError(f"MicroCoderGRPOTrainer: loss_type {self.loss_type!r} is not one of {SUPPORTED_LOSS_TYPES}")
        n = m["num_tokens"]
        totals = self.accelerator.reduce(torch.stack([
            m["entropy_mean"] * n, m["clipfrac_low"] * n, m["clipfrac_high"] * n, n]).detach(), reduction="sum")
        count = totals[3].clamp(min=1.0)
        self._metrics[mode]["entropy"].append((totals[0] / count).item())
        self._metrics[mode]["clip_ratio/low_mean"].append((totals[1] / count).item())
        self._metrics[mode]["clip_ratio/high_mean"].append((totals[2] / count).item())
        self._metrics[mode]["clip_ratio/region_mean"].append(((totals[1] + totals[2]) / count).item())
        return loss
