"""verl adapter (verl 0.9): reward functions, and our loss and advantage estimator in verl's registries.

Importing this module registers, in ``verl.trainer.ppo.core_algos``:

- the policy loss ``"microcoder"`` (``actor_rollout_ref.actor.policy_loss.loss_mode=microcoder``):
  ``ops.grpo_loss`` under verl's ``vanilla`` config (``clip_ratio``/``clip_ratio_low``/``clip_ratio_high``,
  dual clip ``clip_ratio_c``) and aggregations (``loss_agg_mode`` token-mean, token-sum, seq-mean-token-sum,
  seq-mean-token-sum-norm, seq-mean-token-mean, with ``global_batch_info`` for data parallelism), returning
  verl's metrics ``actor/pg_clipfrac``, ``actor/ppo_kl``, ``actor/pg_clipfrac_lower``. Rollout importance
  weights (``rollout_is_weights``) are refused: the op cannot weight tokens.
- the advantage estimator ``"microcoder_grpo"`` (``algorithm.adv_estimator=microcoder_grpo``): verl's GRPO
  advantage (``ops.group_advantages`` with verl's conventions: unbiased std + 1e-6, a group of one keeps
  its raw score, ``norm_adv_by_std_in_grpo``) times MicroCoder's conditional truncation mask
  (``rl.masking.truncation_mask``). verl hands an estimator only the token rewards, the response mask and
  the group ids, so here: truncated = the response fills ``response_length``; not judged wrong = score > 0
  (verl does not pass whether a response held no code); the repetition-loop test cannot run (verl does not
  pass the tokens). The rule's knobs come from the environment of the process that computes advantages
  (the driver): ``MICROCODER_TRUNCATION_MODE`` (conditional | none | all; default conditional),
  ``MICROCODER_TRUNCATION_RHO`` (default 0.1), ``MICROCODER_TRUNCATION_SEED`` (default 0).

Reward: ``compute_score`` (verl's per-sample signature) and ``compute_score_batch`` (the batched one: the
whole batch is judged in one call) for ``reward.custom_reward_function`` with
``path=pkg://microcoder_fast.integrations.verl``. ``ground_truth`` holds the tests: our encoding
(``{"inputs", "outputs", "fn_name"}``, a dict or its JSON) or a LiveCodeBench row (a dict or JSON with
``private_test_cases`` and optionally ``public_test_cases`` and ``metadata``). Each process keeps one
persistent judge (``configure`` swaps in any executor, e.g. the Ray one).

verl imports this module in its processes through ``VERL_USE_EXTERNAL_MODULES=microcoder_fast.integrations.verl``
(read by ``import verl`` in every process, driver and workers), through
``actor_rollout_ref.model.external_lib=microcoder_fast.integrations.verl`` (imported where the model config
is built), and the reward path imports it by itself.

Imports torch, verl, ops, rl.masking and the shared judge (_judge); never TRL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from microcoder_fast import ops
from microcoder_fast.integrations._judge import BatchJudge
from microcoder_fast.rl.masking import truncation_mask

try:
    from verl.trainer.ppo.core_algos import register_adv_est, register_policy_loss
except ImportError as e:  # pragma: no cover - exercised only without verl
    raise ImportError(
        "microcoder_fast.integrations.verl needs verl 0.9: pip install --no-deps 'verl==0.9.1' and then "
        "pip install -e '.[verl]' (omegaconf, codetiming, tensordict<=0.10, ray); see the README 'Use with verl'"
    ) from e

__all__ = ["ADV_ESTIMATOR", "POLICY_LOSS", "compute_microcoder_grpo_advantage", "compute_policy_loss_microcoder",
           "compute_score", "compute_score_batch", "configure"]

POLICY_LOSS = "microcoder"
ADV_ESTIMATOR = "microcoder_grpo"
AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-sum-norm", "seq-mean-token-mean")

_JUDGE: BatchJudge | None = None


def configure(executor: Any = None, **settings: Any) -> None:
    """Set this process's judge: ``executor`` (any object with ``submit``) and ``BatchJudge`` settings
    (``workers``, ``time_limit_s``, ``memory_limit_mb``, ``compare``, ``max_tests``)."""
    global _JUDGE
    if _JUDGE is not None:
        _JUDGE.close()
    _JUDGE = BatchJudge(executor, tests_column="ground_truth", **settings)


def _judge() -> BatchJudge:
    if _JUDGE is None:
        configure()
    assert _JUDGE is not None
    return _JUDGE


def _problem(ground_truth: Any) -> Any:
    value = ground_truth
    if isinstance(value, str) and value.lstrip()[:1] == "{":
        value = json.loads(value)
    if isinstance(value, Mapping) and ("private_test_cases" in value or "public_test_cases" in value):
        row = dict(value)
        return _judge().problem(row.get("private_test_cases", "[]"), row, fmt="lcb")
    return _judge().problem(value, fmt="microcoder")


def _scored(outcome: Any) -> dict[str, float]:
    # verl's managers need a number for every sample, so a judge failure (IE) scores 0; judge_error makes it a
    # metric of its own (verl logs every key of the dict) instead of a silent zero
    return {"score": outcome.reward, "acc": outcome.reward, "judge_error": float(outcome.verdict == "IE")}


def compute_score(data_source: Any = None, solution_str: str = "", ground_truth: Any = None,
                  extra_info: Any = None, **kwargs: Any) -> dict[str, float]:
    """verl's per-sample reward: ``score`` 1.0 iff the program in ``solution_str`` passes every test in
    ``ground_truth`` (plus ``acc``, the same, and ``judge_error``, 1.0 when the judge failed: IE)."""
    return _scored(_judge().outcomes([solution_str], [_problem(ground_truth)])[0])


def compute_score_batch(data_sources: Sequence[Any] | None = None, solution_strs: Sequence[str] = (),
                        ground_truths: Sequence[Any] = (), extra_infos: Sequence[Any] | None = None,
                        **kwargs: Any) -> list[dict[str, float]]:
    """verl's batched reward (``BatchRewardManager``): the whole batch is judged in one call."""
    if len(solution_strs) != len(ground_truths):
        raise ValueError(f"{len(solution_strs)} solutions but {len(ground_truths)} ground truths")
    problems = [_problem(g) for g in ground_truths]
    return [_scored(o) for o in _judge().outcomes(list(solution_strs), problems)]


@register_policy_loss(POLICY_LOSS)
def compute_policy_loss_microcoder(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """verl's ``vanilla`` PPO-clip loss computed by ``ops.grpo_loss`` (same config keys, same metrics)."""
    if config is None:
        raise ValueError("the microcoder policy loss needs verl's actor config (clip_ratio, clip_ratio_c, ...)")
    if rollout_is_weights is not None:
        raise ValueError("the microcoder policy loss cannot apply rollout importance weights; turn off "
                         "algorithm.rollout_correction or use loss_mode=vanilla")
    if loss_agg_mode not in AGG_MODES:
        raise ValueError(f"loss_agg_mode {loss_agg_mode!r} is not one of {AGG_MODES}")
    clip = config.clip_ratio
    low = config.clip_ratio_low if config.get("clip_ratio_low") is not None else clip
    high = config.clip_ratio_high if config.get("clip_ratio_high") is not None else clip
    info = dict(config.get("global_batch_info") or {})
    dp = info.get("dp_size", 1) or 1
    n_tokens, n_seqs, scale_len = info.get("batch_num_tokens"), info.get("global_batch_size"), info.get(
        "loss_scale_factor")
    if dp > 1 and ((loss_agg_mode == "token-mean" and n_tokens is None)
                   or (loss_agg_mode.startswith("seq-mean") and n_seqs is None)):
        raise ValueError(f"loss_agg_mode {loss_agg_mode!r} with dp_size {dp} needs global_batch_info's "
                         "batch_num_tokens / global_batch_size (verl fills them in its actor)")
    mask = response_mask
    kw = dict(eps_low=low, eps_high=high, dual_clip=config.get("clip_ratio_c", 3.0))
    if loss_agg_mode == "seq-mean-token-mean":
        loss, m = ops.grpo_loss(log_prob, old_log_prob, advantages, mask, agg="seq-mean-token-mean", **kw)
        if n_seqs is not None:  # ours divides by the local non-empty sequences; verl by the global count
            loss = loss * (mask.sum(-1) > 0).sum() / n_seqs * dp
    elif loss_agg_mode == "token-mean" and n_tokens is None:
        loss, m = ops.grpo_loss(log_prob, old_log_prob, advantages, mask, agg="token-mean", **kw)
    else:
        loss, m = ops.grpo_loss(log_prob, old_log_prob, advantages, mask, agg="token-sum", **kw)
        if loss_agg_mode == "token-mean":
            loss = loss / n_tokens * dp
        elif loss_agg_mode == "token-sum":
            loss = loss * dp
        else:  # seq-mean-token-sum(-norm): the token sum over the (non-empty, or global) sequence count
            seqs = n_seqs if n_seqs is not None else (mask.sum(-1) > 0).sum().clamp(min=1)
            loss = loss / seqs * dp
            if loss_agg_mode == "seq-mean-token-sum-norm":
                loss = loss / (scale_len if scale_len is not None else mask.shape[-1])
    metrics = {"actor/pg_clipfrac": m["pg_clipfrac"].item(), "actor/ppo_kl": m["ppo_kl"].item(),
               "actor/pg_clipfrac_lower": m["pg_clipfrac_lower"].item()}
    return loss, metrics


_MASK_GENERATOR: torch.Generator | None = None


def _mask_settings() -> tuple[str, float]:
    mode = os.environ.get("MICROCODER_TRUNCATION_MODE", "conditional")
    rho = float(os.environ.get("MICROCODER_TRUNCATION_RHO", "0.1"))
    if mode not in ("conditional", "none", "all"):
        raise ValueError(f"MICROCODER_TRUNCATION_MODE={mode!r}: use conditional, none or all")
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"MICROCODER_TRUNCATION_RHO={rho!r}: use a probability in [0, 1]")
    return mode, rho


@register_adv_est(ADV_ESTIMATOR)
def compute_microcoder_grpo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool = True,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's GRPO advantage (``ops.group_advantages``) times MicroCoder's conditional truncation mask."""
    global _MASK_GENERATOR
    if config is not None:
        norm_adv_by_std_in_grpo = config.get("norm_adv_by_std_in_grpo", norm_adv_by_std_in_grpo)
    scores = token_level_rewards.sum(dim=-1).to(torch.float32)
    ids = [str(i) for i in index]
    groups: dict[str, list[int]] = {}
    for row, uid in enumerate(ids):
        groups.setdefault(uid, []).append(row)
    sizes = {len(rows) for rows in groups.values()}
    if len(sizes) != 1:
        raise ValueError(f"microcoder_grpo needs groups of one size (rollout.n), got sizes {sorted(sizes)}")
    order = torch.tensor([row for rows in groups.values() for row in rows], dtype=torch.long)
    adv_sorted = ops.group_advantages(scores[order].cpu(), group_size=sizes.pop(), eps=epsilon,
                                      std="unbiased" if norm_adv_by_std_in_grpo else "none", singleton="raw")
    adv = torch.empty_like(adv_sorted)
    adv[order] = adv_sorted
    mode, rho = _mask_settings()
    if mode != "none":
        if _MASK_GENERATOR is None:
            _MASK_GENERATOR = torch.Generator().manual_seed(int(os.environ.get("MICROCODER_TRUNCATION_SEED", "0")))
        lengths = response_mask.sum(-1)
        truncated = (lengths >= response_mask.shape[-1]).tolist()
        outcomes = ["pass" if s > 0 else "fail" for s in scores.tolist()]
        res = truncation_mask([()] * len(ids), truncated, outcomes, mode=mode, rho=rho, window=1,
                              generator=_MASK_GENERATOR)
        adv = adv * (~res.mask).to(adv.dtype)
    adv = adv.to(token_level_rewards.device).unsqueeze(-1) * response_mask
    return adv, adv
