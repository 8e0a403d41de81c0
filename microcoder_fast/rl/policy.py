"""The policy model: where its weights come from (a checkpoint, the locally built tiny model, or an HF
directory), loading it with its tokenizer (fp32 master weights, FSDP2 under torchrun), its compute dtype,
and the forward pass from a `Batch` to the response tokens' log-probs at logits / T.

Must not import an optimiser, the engines, the judge, or ``rl.trainer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from microcoder_fast.data.problem import CodeProblem
from microcoder_fast.ops.token_logprobs import token_logprobs
from microcoder_fast.rl import distributed as rldist
from microcoder_fast.rl.batching import Batch
from microcoder_fast.rl.config import TrainConfig
from microcoder_fast.rl.dataset import render_prompt, sft_target


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
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model = rldist.shard_model(model, ctx, dtype)  # FSDP2 under torchrun, else unchanged
    set_compute_dtype(model, dtype)
    model.train()
    return model, tokenizer


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
