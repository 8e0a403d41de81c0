"""The GRPO loss from logits in plain PyTorch: the naive oracle and the chunked CPU path of
``ops.fused_grpo_loss``.

- ``fused_grpo_loss_reference``: ``log_softmax(logits / T)`` over the whole [B, L, V] in fp32, gather, then
  ``grpo_loss_reference``; autograd gives d(logits). Materialises [B, L, V] fp32 (and more for the backward):
  the test oracle and the "naive" bench provider.
- ``fused_grpo_loss_chunked``: walks the tokens in chunks of bounded size; per chunk it computes logp (and the
  entropy), the per-token GRPO terms and ``g = dloss/dlogp`` (row-local given the aggregation weights), and
  writes ``g · (onehot - softmax) / T`` into the gradient buffer (which may be the logits buffer). Peak extra
  memory: a few chunk-sized fp32 tiles plus the gradient buffer (none when in place).
"""

from __future__ import annotations

import torch

from microcoder_fast.reference.grpo_loss import (
    grpo_loss_reference,
    grpo_token_terms,
    reduce_terms,
    sequence_scale,
)

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
    temperature: float,
    eps_low: float,
    eps_high: float,
    kl_coef: float,
    dual_clip: float | None,
    agg: str,
    max_len: float | None,
    grad_out: torch.Tensor | None,
    compute_entropy: bool,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chunked forward + gradient. ``grad_out`` [B, L, V] receives d(loss)/d(logits) (may be ``logits``
    itself; None = no gradient). Returns (loss, metrics vector, [2, B*L] fp32 rows logp and entropy)."""
    B, L, V = logits.shape
    n = B * L
    inv_t = 1.0 / temperature
    valid = (mask != 0).reshape(-1)
    scale = sequence_scale(mask, agg, max_len)
    w = scale.repeat_interleave(L) if n else scale.new_zeros(0)
    tgt = target.reshape(-1)
    old = old_logp.reshape(-1)
    adv = advantages.repeat_interleave(L) if advantages.dim() == 1 else advantages.reshape(-1)
    ref = ref_logp.reshape(-1) if ref_logp is not None else None
    logp = torch.zeros(n, dtype=torch.float32, device=logits.device)
    ent = torch.zeros(n, dtype=torch.float32, device=logits.device)
    chunk_rows = max(1, chunk_bytes // max(4 * V, 1))
    flat = _flattenable(logits) and (grad_out is None or _flattenable(grad_out))
    terms_parts: list[dict[str, torch.Tensor]] = []
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
        terms_parts.append(tm)
        if grad_out is not None:
            g = tm["grad"] * inv_t
            p.mul_(-g[:, None])
            p.scatter_add_(1, t[:, None], g[:, None])
            p[~v] = 0.0
            _rows(grad_out, sl, flat).copy_(p)
        del p
    if terms_parts:
        terms = {k: torch.cat([tp[k] for tp in terms_parts]) for k in terms_parts[0]}
        # Reorder is not needed: blocks cover 0..n in order.
    else:
        z0 = torch.zeros(0, device=logits.device)
        b0 = torch.zeros(0, dtype=torch.bool, device=logits.device)
        terms = {"pg": z0, "kl": z0, "ratio": z0, "nlr": z0, "clip_low": b0, "clip_high": b0, "dual": b0}
    loss, metrics = reduce_terms(
        terms["pg"],
        terms["kl"],
        terms["ratio"],
        terms["nlr"],
        terms["clip_low"],
        terms["clip_high"],
        terms["dual"],
        valid,
        w,
        kl_coef,
    )
    return loss, metrics, torch.stack([logp, ent])
