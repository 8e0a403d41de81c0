"""Rollout engines with one interface: vLLM in the trainer's process, and HF ``generate`` as the fallback.

``engine.generate(prompts, n, temperature, max_tokens, seed, on_group=...)`` samples ``n`` responses per
prompt (pure temperature sampling: no top-k/top-p, so the sampled distribution is softmax(logits / T),
the one the trainer's log-probs use) and returns ``[[Completion] * n] * len(prompts)``. ``on_group`` is
called with each prompt's finished group as soon as it is available, so the caller can submit it to the
judge while the engine keeps generating (reward overlapped with generation).

``engine.sync_weights(model)`` makes the engine sample from the trainer's current weights: a no-op for
the HF engine (it samples from the trainer's model object itself); for vLLM the state dict is loaded in
place with ``collective_rpc("reload_weights", ...)`` and the prefix cache is reset.

Imports torch and, lazily, vLLM; never the executor, ``cli`` or ``integrations``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Completion:
    token_ids: list[int]
    text: str
    truncated: bool  # hit max_tokens without emitting EOS
    logprobs: list[float] | None  # the engine's log-prob of each sampled token at logits / T


GroupCallback = Callable[[int, list[Completion]], None]


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


class HFEngine:
    """Samples with ``model.generate`` on the trainer's own model (weights are always in sync)."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, chunk: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.chunk = chunk
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos

    def sync_weights(self, model: Any) -> None:
        self.model = model

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        temperature: float,
        max_tokens: int,
        seed: int,
        on_group: GroupCallback | None = None,
    ) -> list[list[Completion]]:
        model = self.model
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        rng_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        # whole groups per chunk, so each chunk ends with complete groups to hand to the judge
        groups_per_chunk = max(1, self.chunk // n)
        results: list[list[Completion]] = [[] for _ in prompts]
        try:
            for start in range(0, len(prompts), groups_per_chunk):
                idx = list(range(start, min(len(prompts), start + groups_per_chunk)))
                rows = [list(prompts[i]) for i in idx for _ in range(n)]
                width = max(len(r) for r in rows)
                input_ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
                attn = torch.zeros((len(rows), width), dtype=torch.long)
                for j, r in enumerate(rows):  # left padding
                    input_ids[j, width - len(r):] = torch.tensor(r)
                    attn[j, width - len(r):] = 1
                out = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attn.to(device),
                    do_sample=True,
                    temperature=temperature,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=max_tokens,
                    eos_token_id=self.eos,
                    pad_token_id=self.pad,
                    output_scores=True,
                    return_dict_in_generate=True,
                )
                seqs = out.sequences[:, width:].cpu()
                # processed scores = logits / T (the only processor with top_k=0, top_p=1)
                lp_steps = torch.stack([torch.log_softmax(s.float(), dim=-1) for s in out.scores], dim=1).cpu()
                tok_lp = lp_steps.gather(-1, seqs[:, : lp_steps.shape[1], None])[..., 0]
                for j in range(len(rows)):
                    toks = seqs[j].tolist()
                    if self.eos in toks:
                        cut = toks.index(self.eos)
                        ids, truncated = toks[: cut + 1], False
                    else:
                        ids, truncated = toks[:max_tokens], True
                    c = Completion(
                        token_ids=ids,
                        text=self.tokenizer.decode(ids, skip_special_tokens=True),
                        truncated=truncated,
                        logprobs=tok_lp[j, : len(ids)].tolist(),
                    )
                    results[idx[j // n]].append(c)
                if on_group is not None:
                    for i in idx:
                        on_group(i, results[i])
        finally:
            torch.random.set_rng_state(rng_state)
            if was_training:
                model.train()
        return results

    def close(self) -> None:
        pass


# vLLM's in-place reload warns "<layer>: Failed to load weights" for each layer the state dict has no tensor
# for, after every sync. RotaryEmbedding owns no weights (its cos/sin cache is computed and put back as is),
# so for it the warning is noise that reads as a broken sync; any other layer still warns.
_RELOAD_LOGGER = "vllm.model_executor.model_loader.reload.layerwise"


class _HarmlessReloadWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == "%s: Failed to load weights" and record.args
                    and record.args[0] == "RotaryEmbedding")


def _quiet_vllm() -> None:
    """vLLM logs at WARNING unless the user set ``VLLM_LOGGING_LEVEL``; the harmless reload warning is dropped."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    logger = logging.getLogger(_RELOAD_LOGGER)
    if not any(isinstance(f, _HarmlessReloadWarning) for f in logger.filters):
        logger.addFilter(_HarmlessReloadWarning())


class VLLMEngine:
    """vLLM ``LLM`` in this process; groups are streamed out of ``llm_engine.step()`` as they finish."""

    name = "vllm"

    def __init__(
        self,
        model_dir: str,
        tokenizer: Any,
        *,
        dtype: str = "float32",
        max_model_len: int = 4096,
        seed: int = 0,
        gpu_memory_utilization: float = 0.5,
        tensor_parallel_size: int = 1,
        enable_prefix_caching: bool = True,
        kv_cache_space_gb: int = 1,
        llm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """``llm_kwargs``: extra ``vllm.LLM`` arguments (torchrun passes the external-launcher backend)."""
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_space_gb))
        _quiet_vllm()
        from vllm import LLM

        kwargs: dict[str, Any] = dict(
            model=str(model_dir),
            dtype=dtype,
            max_model_len=max_model_len,
            seed=seed,
            enable_prefix_caching=enable_prefix_caching,
            logprobs_mode="processed_logprobs",
            tensor_parallel_size=tensor_parallel_size,
        )
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        else:
            kwargs["enforce_eager"] = True  # CPU: skip the torch.compile warm-up (tens of seconds on 2 cores)
        kwargs.update(llm_kwargs or {})
        self.llm = LLM(**kwargs)
        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token_id
        self._req = 0

    def sync_weights(self, model: Any) -> None:
        """Load the trainer's weights into vLLM in place and drop the (now stale) prefix cache."""
        state = model.state_dict()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(state.items())})
        self.llm.reset_prefix_cache()

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        temperature: float,
        max_tokens: int,
        seed: int,
        on_group: GroupCallback | None = None,
    ) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        ids: dict[str, int] = {}
        for i, p in enumerate(prompts):
            # Per-request seeds make a step's samples reproducible (resume). vllm-cpu 0.32 crashes with them
            # once a prompt's prefill is chunked ("CPU Generator does not use offset"), so on CPU sampling
            # follows the engine's global seed instead and a resumed vLLM-CPU run is not bit-for-bit.
            req_seed = (seed * 1_000_003 + i) % (2**31 - 1) if torch.cuda.is_available() else None
            sp = SamplingParams(
                n=n, temperature=temperature, top_p=1.0, top_k=0, max_tokens=max_tokens, logprobs=0,
                seed=req_seed, output_kind=RequestOutputKind.FINAL_ONLY,
            )
            rid = f"r{self._req}"
            self._req += 1
            ids[rid] = i
            engine.add_request(rid, {"prompt_token_ids": list(p)}, sp)
        results: list[list[Completion] | None] = [None] * len(prompts)
        while engine.has_unfinished_requests():
            for out in engine.step():
                if not out.finished or out.request_id not in ids:
                    continue
                i = ids[out.request_id]
                group = []
                for o in out.outputs:
                    toks = list(o.token_ids)
                    lps = None
                    if o.logprobs is not None:
                        lps = [d[t].logprob for d, t in zip(o.logprobs, toks)]
                    group.append(Completion(
                        token_ids=toks,
                        text=self.tokenizer.decode(toks, skip_special_tokens=True),
                        truncated=o.finish_reason == "length",
                        logprobs=lps,
                    ))
                if len(group) != n:
                    raise RuntimeError(f"vLLM returned {len(group)} completions for prompt {i}, expected n={n}")
                results[i] = group
                if on_group is not None:
                    on_group(i, group)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"vLLM returned no output for prompts {missing[:5]}")
        return results  # type: ignore[return-value]

    def close(self) -> None:
        del self.llm
