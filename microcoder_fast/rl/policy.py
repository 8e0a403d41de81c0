"""The policy model: where its weights come from (a checkpoint, the locally built tiny model, or an HF
directory), loading it with its tokenizer (fp32 master weights, FSDP2 under torchrun), its compute dtype,
its loss path, and the forward pass from a `Batch` to the response tokens' log-probs at logits / T.

**Loss paths** (``loss_path``; `resolve_loss_path` checks the model once, before sharding):

- ``hidden`` (default): the decoder body runs, the LM head's forward is replaced for the call so that it
  receives the last hidden states of the response positions only (HF's ``logits_to_keep``) and returns
  ``ops.linear_token_logprobs(hidden, lm_head.weight, target, T)`` (and the entropy from the same pass): no
  [tokens, V] logits exist, for the prompt or the response. The head runs inside the model's own forward,
  so FSDP2's gathered weight and a tied embedding's shared parameter get their gradient as usual.
- ``fused``: the model's logits for the response positions only, then ``ops.fused_grpo_loss`` with the
  in-place backward (rl/update.py); log-probs without a loss use ``ops.token_logprobs`` on those logits.
- ``logits``: the whole forward's logits (prompt positions too), sliced, then ``ops.token_logprobs``: the
  oracle the other two are tested against.

``hidden`` needs a plain head: a bias-free ``nn.Linear`` output embedding whose output is the model's
logits unchanged. A head with soft-capping, a scale or a bias, or a model without ``logits_to_keep``, is
detected by `resolve_loss_path` (structure, then a numeric probe against the model's own logits) and runs
``fused`` instead, with a log line naming the reason.

Must not import an optimiser, the engines, the judge, or ``rl.trainer``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from microcoder_fast.data.problem import CodeProblem
from microcoder_fast.ops.linear_token_logprobs import linear_token_logprobs
from microcoder_fast.ops.token_logprobs import token_logprobs
from microcoder_fast.rl import distributed as rldist
from microcoder_fast.rl.batching import Batch
from microcoder_fast.rl.config import TrainConfig
from microcoder_fast.rl.dataset import render_prompt, sft_target
from microcoder_fast.rl.report import log

LOSS_PATHS = ("hidden", "fused", "logits")


def policy_dir(cfg: TrainConfig, run_dir: Path, ckpt: Path | None, train_problems: list[CodeProblem],
               ctx: rldist.DistContext) -> Path:
    """The HF directory the policy loads from: the checkpoint's ``model/``, the tiny model (built once into
    ``run_dir/initial_model`` by rank 0, its byte-level BPE trained on the training prompts and reference
    programs, no download), or ``cfg.model``."""
    if ckpt is not None:
        model_dir = ckpt / "model"
    elif cfg.model == "tiny":
        from microcoder_fast.rl.model import build_tiny_model

        model_dir = run_dir / "initial_model"
        if ctx.is_main and not (model_dir / "config.json").is_file():
            corpus = [render_prompt(p, None, False) for p in train_problems]
            corpus += [sft_target(p) for p in train_problems if p.solution]
            build_tiny_model(corpus=corpus, vocab_size=cfg.tiny_vocab_size, out_dir=model_dir, seed=cfg.seed,
                             hidden_size=cfg.tiny_hidden_size, num_layers=cfg.tiny_num_layers,
                             num_heads=cfg.tiny_num_heads, num_kv_heads=cfg.tiny_num_kv_heads,
                             intermediate_size=cfg.tiny_intermediate_size,
                             max_position_embeddings=max(2048, cfg.max_prompt_length + cfg.eval_max_response_length))
    else:
        model_dir = Path(cfg.model)
    ctx.barrier()  # rank 0 has built the tiny model
    return model_dir


def load_policy(model_dir: Path, cfg: TrainConfig, device: torch.device, dtype: torch.dtype,
                ctx: rldist.DistContext) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from ``model_dir``, the model in train mode on ``device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    # fp32 master weights whatever `dtype` says: `dtype` is the compute dtype (autocast; FSDP2's
    # param_dtype), since AdamW steps of lr ~1e-6 vanish when added to bf16 weights
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device)
    path, why = resolve_loss_path(model, cfg.loss_path)
    if path != cfg.loss_path:
        log(f"loss_path={cfg.loss_path} is not available for {type(model).__name__}: {why}; using loss_path={path}")
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model = rldist.shard_model(model, ctx, dtype)  # FSDP2 under torchrun, else unchanged
    set_compute_dtype(model, dtype)
    set_loss_path(model, path)
    model.train()
    return model, tokenizer


def set_compute_dtype(model: Any, dtype: torch.dtype) -> None:
    """Mixed precision: the parameters stay in their (fp32 master) dtype and the forward runs under
    autocast to ``dtype`` (bf16 on GPUs); optimiser updates are never rounded to bf16."""
    model._mcf_compute_dtype = dtype


def set_loss_path(model: Any, path: str) -> None:
    """The path `response_logprobs` and the update take for ``model`` (checked by `resolve_loss_path`)."""
    if path not in LOSS_PATHS:
        raise ValueError(f"loss_path {path!r} is not one of {list(LOSS_PATHS)}")
    model._mcf_loss_path = path


def loss_path_of(model: Any) -> str:
    """The model's loss path; ``logits`` (the oracle) for a model no one has set one on."""
    return getattr(model, "_mcf_loss_path", "logits")


def _plain_head_problem(model: Any) -> str | None:
    """Why ``hidden`` cannot run on ``model`` judging by its structure, or None."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        return "the model exposes no output embedding (get_output_embeddings() is None)"
    if not isinstance(head, torch.nn.Linear):
        return f"its output embedding is a {type(head).__name__}, not a plain nn.Linear"
    if head.bias is not None:
        return "its LM head has a bias (ops.linear_token_logprobs takes a bias-free weight)"
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return "its forward has no logits_to_keep argument (needed to run the head on response positions only)"
    return None


@torch.no_grad()
def resolve_loss_path(model: Any, requested: str) -> tuple[str, str]:
    """``(path, reason)``: ``requested`` when the model supports it, else the fallback. ``hidden`` needs a plain
    head (`_plain_head_problem`) and, checked numerically on a short input, the model's own log-probs must
    equal ``linear_token_logprobs`` of its last hidden states (this catches soft-capping, logit scales and any
    other post-processing of the head's output); otherwise ``fused``. ``fused`` needs ``logits_to_keep``,
    else ``logits``."""
    if requested not in LOSS_PATHS:
        raise ValueError(f"loss_path {requested!r} is not one of {list(LOSS_PATHS)}")
    if requested == "logits":
        return requested, ""
    keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    if requested == "fused":
        return ("fused", "") if keep else ("logits", "its forward has no logits_to_keep argument")
    problem = _plain_head_problem(model)
    if problem is None:
        problem = _probe_hidden(model)
    if problem is None:
        return "hidden", ""
    return ("fused" if keep else "logits"), problem


_HEAD_POSTPROCESS_KEYS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def _probe_hidden(model: Any) -> str | None:
    """Why the hidden path would not reproduce the model's own log-probs, or None.

    A config that declares a post-processed head (soft-capping, a logit scale) is refused by name. Then the
    two paths are compared (T = 0.7) on one short sequence with the head weight temporarily scaled so that the
    logits spread over about ±150: a soft-cap or a scale that random small logits would hide shows there.
    """
    cfg = getattr(model, "config", None)
    for key in _HEAD_POSTPROCESS_KEYS:
        v = getattr(cfg, key, None)
        if v not in (None, 0, 0.0, 1, 1.0, False):
            return f"its config sets {key}={v} (the head's output is post-processed)"
    device = next(model.parameters()).device
    w = model.get_output_embeddings().weight
    vocab = w.shape[0]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, min(vocab, 1000), (1, 12), generator=g).to(device)
    b = Batch(ids, torch.ones_like(ids), torch.arange(12, device=device)[None], ids[:, 4:].cpu(),
              torch.ones(1, 8), 4)
    was_training = model.training
    saved = w.detach().clone()
    model.eval()
    try:
        with torch.no_grad():
            plain = _forward(model, b, logits_to_keep=_response_positions(b, device)).logits.float()
            w.mul_(50.0 / max(float(plain.std()), 1e-6))
            want, _ = _micro_logprobs(model, b, 0.7, False, "logits")
            got, _ = _micro_logprobs(model, b, 0.7, False, "hidden")
    except Exception as e:  # noqa: BLE001  (any failure of the hidden path on this model means: do not use it)
        return f"the hidden path failed on a probe ({type(e).__name__}: {e})"
    finally:
        with torch.no_grad():
            w.copy_(saved)
        model.train(was_training)
    err = float((want.float() - got.float()).abs().max())
    if not err <= 1e-2:  # fp32 round-off at logits of ~±150 is ~1e-4; a soft-cap or a scale moves them by far more
        return (f"its logits are not lm_head(hidden states) (log-probs differ by {err:.3g} on a probe): a soft-capped, "
                "scaled or otherwise post-processed head")
    return None


@contextlib.contextmanager
def _head_replaced(head: torch.nn.Module, fn: Any) -> Iterator[None]:
    """Within the block ``head(x)`` returns ``fn(head, x)``."""
    head.forward = lambda x: fn(head, x)  # an instance attribute shadows the class's forward
    try:
        yield
    finally:
        del head.forward


def _forward(model: Any, b: Batch, **kw: Any) -> Any:
    device = next(model.parameters()).device
    dtype = getattr(model, "_mcf_compute_dtype", torch.float32)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        return model(input_ids=b.input_ids.to(device), attention_mask=b.attention_mask.to(device),
                     position_ids=b.position_ids.to(device), use_cache=False, **kw)


def _response_positions(b: Batch, device: torch.device) -> torch.Tensor:
    """Sequence positions whose outputs predict the response tokens: W - 1 ... W + R - 2."""
    r = b.responses.shape[1]
    return torch.arange(b.prompt_width - 1, b.prompt_width - 1 + r, device=device)


def response_logits(model: Any, b: Batch) -> torch.Tensor:
    """[N, R, V] logits (the model's own, post-processing included) for the response positions only (fused)."""
    device = next(model.parameters()).device
    return _forward(model, b, logits_to_keep=_response_positions(b, device)).logits


def _micro_logprobs(model: Any, b: Batch, temperature: float, with_entropy: bool,
                    path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[N, R] log-probs (and entropies) of all of ``b``'s response tokens along ``path``."""
    device = next(model.parameters()).device
    target = b.responses.to(device)
    if path == "hidden":
        box: dict[str, Any] = {}

        def head_fn(head: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
            w = head.weight if head.weight.dtype == h.dtype else head.weight.to(h.dtype)
            out = linear_token_logprobs(h, w, target, temperature=temperature, return_entropy=with_entropy)
            lp, ent = out if with_entropy else (out, None)
            box["ent"] = ent
            return lp

        with _head_replaced(model.get_output_embeddings(), head_fn):
            lp = _forward(model, b, logits_to_keep=_response_positions(b, device)).logits
        return lp, box["ent"]
    if path == "fused":
        logits = response_logits(model, b)
    else:  # logits: the whole forward, sliced (a strided view: ops.token_logprobs takes it as is)
        r = b.responses.shape[1]
        logits = _forward(model, b).logits[:, b.prompt_width - 1 : b.prompt_width - 1 + r]
    if with_entropy:
        lp, ent = token_logprobs(logits, target, temperature=temperature, return_entropy=True)
        return lp, ent
    return token_logprobs(logits, target, temperature=temperature), None


def response_logprobs(model: Any, b: Batch, idx: slice | torch.Tensor | list[int], temperature: float,
                      with_entropy: bool = False, path: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) [len(idx), R] of the response tokens of rows ``idx`` at logits / T, along
    the model's loss path (or ``path``). The rows run trimmed to their own padding (`Batch.select`); the
    result is zero-padded back to ``b``'s response width R."""
    sb = b.select(idx)
    lp, ent = _micro_logprobs(model, sb, temperature, with_entropy, path or loss_path_of(model))
    pad = b.responses.shape[1] - lp.shape[1]
    if pad:
        lp = torch.nn.functional.pad(lp, (0, pad))
        ent = torch.nn.functional.pad(ent, (0, pad)) if ent is not None else None
    return lp, ent
