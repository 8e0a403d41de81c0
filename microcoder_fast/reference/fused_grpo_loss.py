"""The GRPO loss from logits in plain PyTorch: the naive oracle and the chunked CPU path of
``ops.fused_grpo_loss``.

- ``fused_grpo_loss_reference``: ``log_softmax(logits / T)`` over the whole [B, L, V] in fp32, gather, then
  ``grpo_loss_reference``; autograd gives d(logits). Materialises [B, L, V] fp32 (and more for the backward):
  the test oracle and the "naive" bench provider.
- ``fused_grpo_loss_chunked``: walks the tokens in chunks of bounded size; per chunk it computes logp (and the
  entropy), the per-token GRPO terms and ``g = dloss/dlogp`` (row-local given the aggregation weights), and
  writes ``g · (onehot - softmax) / T`` into the gradient buffer (which may be the logits buffer). Returns the
  same [8, N] per-token rows as the Triton kernel (the op reduces both the same way). Peak extra memory: a few
  chunk-sized fp32 tiles plus the gradient buffer (none when in place).

Imports torch and the other references only.
"""

from __future__ import annotations

import torch

from microcoder_fast.reference.grpo_loss import grpo_loss_reference, grpo_token_terms

DEFAULT_CHUNK_BYTES = 32 << 20  # fp32 bytes of one [rows, V] chunk


def logprobs_entropy_reference(
    logits: torch.Tensor, target: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 (logp, entropy) of ``softmax(logits / T)`` at ``target`` — differentiable, materialises fp32."""
    z = logits.to(torch.float32) * (1.0 / temperature)
    lsm = torch.log_softmax(z, dim=-1)
    logp = lsm.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
    p = lsm.exp()
    ent = -torch.where(p > 0, p * lsm, torch.zeros_like(p)).sum(-1)
    return logp, ent


def fused_grpo_loss_reference(
    logits: torch.Tensor,
    target: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    kl_coef: float = 0.0,
    ref_logp: torch.Tensor | None = None,
    agg: str = "token-mean",
    dual_clip: float | None = None,
    max_len: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The naive oracle: full fp32 log-softmax, gather, verl-style loss; differentiable in ``logits``."""
    valid = mask != 0
    logp, ent = logprobs_entropy_reference(logits, torch.where(valid, target, 0), temperature)
    # A masked token may carry anything (e.g. target -100 is never gathered meaningfully): keep it finite.
    logp = torch.where(valid, logp, torch.zeros_like(logp))
    loss, metrics = grpo_loss_reference(
        logp, old_logp, advantages, mask, eps_low, eps_high, kl_coef, ref_logp, agg, dual_clip, max_len
    )
    e = torch.where(valid, ent.detach(), torch.zeros_like(ent))
    metrics["entropy_mean"] = e.sum() / valid.sum().clamp(min=1).to(torch.float32)
    return loss, metrics


def _flattenable(t: torch.Tensor) -> bool:
    return t.shape[0] <= 1 or t.stride(0) == t.shape[1] * t.stride(1)


def _row_slices(B: int, L: int, chunk_rows: int, flat: bool) -> list[slice]:
    """Flattened token ranges of at most ``chunk_rows`` rows; within one sequence unless ``flat``."""
    if flat:
        return [slice(r0, min(r0 + chunk_rows, B * L)) for r0 in range(0, B * L, chunk_rows)]
    return [
        slice(b * L + l0, b * L + min(l0 + chunk_rows, L)) for b in range(B) for l0 in range(0, L, chunk_rows)
    ]


def _rows(t: torch.Tensor, sl: slice, flat: bool) -> torch.Tensor:
    """The [rows, V] view of ``t`` [B, L, V] for the flattened token range ``sl`` (never a copy)."""
    B, L, V = t.shape
    if flat:
        return t.as_strided((B * L, V), (t.stride(1), t.stride(2)))[sl]
    b = sl.start // L
    return t[b, sl.start - b * L : sl.stop - b * L]


def fused_grpo_loss_chunked(
    logits: torch.Tensor,
    target: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None,
    seq_scale: torch.Tensor,
    temperature: float,
    eps_low: float,
    eps_high: float,
    kl_coef: float,
    dual_clip: float | None,
    grad_out: torch.Tensor | None,
    compute_entropy: bool,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> torch.Tensor:
    """Chunked forward + gradient. ``seq_scale`` [B] holds the aggregation weight of each sequence; ``grad_out``
    [B, L, V] receives d(loss)/d(logits) (may be ``logits`` itself; None = no gradient).

    Returns fp32 [8, B*L] rows: pg, kl, ratio, -clamped log-ratio, packed flags, dloss/dlogp, logp, entropy
    (zeros for masked tokens), as ``kernels.fused_grpo_loss`` writes them."""
    B, L, V = logits.shape
    n = B * L
    inv_t = 1.0 / temperature
    valid = (mask != 0).reshape(-1)
    w = seq_scale.to(torch.float32).repeat_interleave(L) if n else seq_scale.new_zeros(0, dtype=torch.float32)
    tgt = target.reshape(-1)
    old = old_logp.reshape(-1)
    adv = advantages.repeat_interleave(L) if advantages.dim() == 1 else advantages.reshape(-1)
    ref = ref_logp.reshape(-1) if ref_logp is not None else None
    chunk_rows = max(1, chunk_bytes // max(4 * V, 1))
    flat = _flattenable(logits) and (grad_out is None or _flattenable(grad_out))
    out = torch.zeros(8, n, dtype=torch.float32, device=logits.device)
    logp, ent = out[6], out[7]
    for sl in _row_slices(B, L, chunk_rows, flat) if n else []:
        rows = _rows(logits, sl, flat)
        v = valid[sl]
        z = rows.to(torch.float32, copy=True)  # never the caller's buffer: modified in place below
        z.mul_(inv_t)
        lse = torch.logsumexp(z, dim=-1)
        dead = lse == float("-inf")
        lse_safe = torch.where(dead, torch.zeros_like(lse), lse)
        t = torch.where(v, tgt[sl], torch.zeros_like(tgt[sl])).long()
        z_t = z.gather(1, t[:, None]).squeeze(1)
        lp = torch.minimum(z_t - lse_safe, torch.zeros_like(z_t))
        lp = torch.where(dead | (z_t == float("-inf")), torch.full_like(lp, float("-inf")), lp)
        lp = torch.where(v, lp, torch.zeros_like(lp))
        z -= lse_safe[:, None]  # z now holds log-softmax (−inf where the logit is −inf)
        p = torch.exp(z)
        p[dead] = 0.0
        if compute_entropy:
            e = -torch.where(p > 0, p * z, torch.zeros_like(p)).sum(-1)
            ent[sl] = torch.where(v, e.clamp(min=0.0), torch.zeros_like(e))
        del z
        logp[sl] = lp
        tm = grpo_token_terms(
            lp,
            old[sl],
            adv[sl],
            v,
            ref[sl] if ref is not None else None,
            w[sl],
            eps_low,
            eps_high,
            kl_coef,
            dual_clip,
        )
        out[:6, sl] = tm
        if grad_out is not None:
            g = tm[5] * inv_t
            p.mul_(-g[:, None])
            p.scatter_add_(1, t[:, None], g[:, None])
            p[~v] = 0.0
            _rows(grad_out, sl, flat).copy_(p)
        del p
    return out
