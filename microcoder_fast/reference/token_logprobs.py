"""Plain-PyTorch token log-probs and entropy: the test oracle and the CPU path.

- ``token_logprobs_naive``: the textbook formula in float64 (or any dtype), materialising [..., V]; the oracle.
- ``token_logprobs_forward_chunked`` / ``token_logprobs_backward_chunked``: fp32, a bounded number of rows
  at a time (``chunk_elems`` fp32 elements per temporary), the same math and edge-case conventions as the
  Triton kernels. Used by ``ops.token_logprobs`` on CPU.

Conventions (shared with the kernels): logits are divided by the temperature; log-probs are clamped to
``<= 0``; a ``-inf`` target logit gives ``-inf``; a row whose logits are all ``-inf`` gives log-prob ``-inf``,
entropy 0 and a zero gradient (never NaN); ``-inf`` entries contribute nothing to the entropy.

Imports only torch; never ``kernels``, ``ops``, ``rl`` or the executor.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK_ELEMS = 1 << 23  # 32 MiB of fp32 per temporary (smaller chunks parallelise worse on CPU)


def token_logprobs_naive(
    logits: torch.Tensor,
    target: torch.Tensor,
    temperature: float = 1.0,
    return_entropy: bool = False,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """log softmax(logits / T)[target] (and the entropy of softmax(logits / T)) computed in ``dtype``."""
    z = logits.to(dtype) / temperature
    lse = torch.logsumexp(z, dim=-1)
    dead = lse == float("-inf")
    lse_safe = torch.where(dead, torch.zeros_like(lse), lse)
    logp_all = z - lse_safe.unsqueeze(-1)
    zt = z.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
    logp = (zt - lse_safe).clamp(max=0.0)
    logp = torch.where(dead | (zt == float("-inf")), torch.full_like(logp, float("-inf")), logp)
    if not return_entropy:
        return logp
    p = torch.exp(logp_all)
    plogp = torch.where(p > 0, p * logp_all, torch.zeros_like(p))
    ent = torch.where(dead, torch.zeros_like(lse), -plogp.sum(-1)).clamp(min=0.0)
    return logp, ent


def _row_chunks(B: int, L: int, V: int, chunk_elems: int) -> list[tuple[int, int, int]]:
    rows = max(1, chunk_elems // max(V, 1))
    return [(b, l0, min(L, l0 + rows)) for b in range(B) for l0 in range(0, L, rows)]


def _scaled_fp32(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """x / T as a fresh fp32 tensor (never modifies x)."""
    if x.dtype == torch.float32:
        return x / temperature
    return x.float().div_(temperature)


def _chunk_stats(
    x: torch.Tensor, target: torch.Tensor, temperature: float, return_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    z = _scaled_fp32(x, temperature)
    zt = z.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
    m = z.amax(dim=-1)
    dead = m == float("-inf")  # an all -inf row
    m_safe = torch.where(dead, torch.zeros_like(m), m)
    zc = z.sub_(m_safe.unsqueeze(-1))  # z - max, in place (z is ours)
    if return_entropy:
        zc.clamp_(min=torch.finfo(torch.float32).min)  # -inf -> finite: exp is still 0 and 0 * zc is 0
        e = torch.exp(zc)
    else:
        e = zc.exp_()
    s = e.sum(-1)
    log_s = torch.log(torch.where(dead, torch.ones_like(s), s))
    lse = torch.where(dead, torch.full_like(s, float("-inf")), m_safe + log_s)
    # (z_t - max) - log s: no rounding at the logits' magnitude (exact for all-negative logits too)
    logp = torch.minimum((zt - m_safe) - log_s, torch.zeros_like(zt))
    logp = torch.where((zt == float("-inf")) | dead, torch.full_like(logp, float("-inf")), logp)
    ent = None
    if return_entropy:
        t = (e * zc).sum(-1)  # sum e * (z - max) (torch's sum: cascaded, accurate for V ~ 1e5)
        s_safe = torch.where(dead, torch.ones_like(s), s)
        ent = torch.where(dead, torch.zeros_like(s), log_s - t / s_safe).clamp_(min=0.0)
    return logp, lse, ent


def token_logprobs_forward_chunked(
    logits3: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
    return_entropy: bool,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``logits3`` [B, L, V], ``target`` [B*L] → fp32 (logp [B*L], lse [B*L], entropy [B*L] or [0])."""
    B, L, V = logits3.shape
    n = B * L
    logp = torch.empty(n, dtype=torch.float32, device=logits3.device)
    lse = torch.empty(n, dtype=torch.float32, device=logits3.device)
    ent = torch.empty(n if return_entropy else 0, dtype=torch.float32, device=logits3.device)
    if n == 0:
        return logp, lse, ent
    for b, l0, l1 in _row_chunks(B, L, V, chunk_elems):
        r0, r1 = b * L + l0, b * L + l1
        lp, ls, en = _chunk_stats(logits3[b, l0:l1], target[r0:r1], temperature, return_entropy)
        logp[r0:r1] = lp
        lse[r0:r1] = ls
        if en is not None:
            ent[r0:r1] = en
    return logp, lse, ent


def softmax_grad_chunk(
    x: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor | None,
    g_logp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
    temperature: float,
    v_offset: int = 0,
) -> torch.Tensor:
    """fp32 d loss / d logits for rows ``x`` [r, v] (global columns v_offset..v_offset+v) given the full lse.

    d/dz_j [g_logp * logp_t + g_ent * H] = g_logp * (1[j = t] - p_j) - g_ent * p_j * (log p_j + H); then / T.
    """
    live = lse != float("-inf")
    lse_safe = torch.where(live, lse, torch.zeros_like(lse))
    # log p_j; -inf logits become -1e30 (p_j = 0 exactly, and 0 * coefficient stays 0 instead of NaN)
    logp_all = _scaled_fp32(x, temperature).sub_(lse_safe.unsqueeze(-1)).clamp_(min=-1e30)
    p = logp_all.exp()
    if g_ent is not None and ent is not None:
        coef = logp_all.add_(ent.unsqueeze(-1))
        coef.mul_(g_ent.float().unsqueeze(-1))
        if g_logp is not None:
            coef.add_(g_logp.float().unsqueeze(-1))
        grad = coef.mul_(p).neg_()
    elif g_logp is not None:
        grad = p.mul_(g_logp.float().unsqueeze(-1)).neg_()
    else:
        return torch.zeros_like(p)
    if g_logp is not None:
        local = target.long() - v_offset
        inside = (local >= 0) & (local < grad.shape[-1])
        rows = inside.nonzero().squeeze(-1)
        if rows.numel():
            grad[rows, local[rows]] += g_logp.float()[rows]
    if not bool(live.all()):
        grad[~live] = 0.0
    return grad.div_(temperature)


def token_logprobs_backward_chunked(
    logits3: torch.Tensor,
    grad3: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor | None,
    g_logp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
    temperature: float,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
) -> torch.Tensor:
    """Write d loss / d logits into ``grad3`` [B, L, V] (may be ``logits3`` itself), a chunk of rows at a time."""
    B, L, V = logits3.shape
    if B * L == 0 or V == 0:
        return grad3
    for b, l0, l1 in _row_chunks(B, L, V, chunk_elems):
        r0, r1 = b * L + l0, b * L + l1
        g = softmax_grad_chunk(
            logits3[b, l0:l1],
            target[r0:r1],
            lse[r0:r1],
            None if ent is None else ent[r0:r1],
            None if g_logp is None else g_logp[r0:r1],
            None if g_ent is None else g_ent[r0:r1],
            temperature,
        )
        grad3[b, l0:l1].copy_(g)
    return grad3
