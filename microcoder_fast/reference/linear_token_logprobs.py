"""Plain-PyTorch token log-probs from hidden states: log softmax(hidden @ weight.T / T)[target].

- ``linear_token_logprobs_naive``: materialises the [N, V] logits in ``dtype`` (float64 by default): the oracle.
- ``linear_forward_chunked`` / ``linear_backward_chunked``: fp32, tiles of ``chunk_tokens`` x ``chunk_vocab``
  with an online log-sum-exp over vocabulary chunks; extra memory is one fp32 tile (plus a [chunk_vocab, D]
  fp32 copy of the weight slice and a [chunk_vocab, D] gradient accumulator) and O(N) row statistics (the
  hidden-state gradient is accumulated in an [N, D] fp32 buffer). Never an [N, V] buffer. The CPU path.

Imports only torch and ``reference.token_logprobs``; never ``kernels``, ``ops``, ``rl`` or the executor.
"""

from __future__ import annotations

import torch

from microcoder_fast.reference.token_logprobs import softmax_grad_chunk, token_logprobs_naive

DEFAULT_CHUNK_TOKENS = 1024
DEFAULT_CHUNK_VOCAB = 4096


def linear_token_logprobs_naive(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    temperature: float = 1.0,
    return_entropy: bool = False,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    logits = hidden.to(dtype) @ weight.to(dtype).T
    return token_logprobs_naive(logits, target, temperature, return_entropy, dtype=dtype)


def linear_forward_chunked(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    temperature: float,
    return_entropy: bool,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    chunk_vocab: int = DEFAULT_CHUNK_VOCAB,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """hidden [N, D], weight [V, D], target [N] → fp32 (logp [N], lse [N], entropy [N] or [0])."""
    N = hidden.shape[0]
    V = weight.shape[0]
    dev = hidden.device
    m = torch.full((N,), float("-inf"), dtype=torch.float32, device=dev)
    s = torch.zeros(N, dtype=torch.float32, device=dev)
    t = torch.zeros(N, dtype=torch.float32, device=dev)
    z_t = torch.zeros(N, dtype=torch.float32, device=dev)
    tgt = target.long()
    for v0 in range(0, V, chunk_vocab):
        v1 = min(V, v0 + chunk_vocab)
        w = weight[v0:v1].float()
        for n0 in range(0, N, chunk_tokens):
            n1 = min(N, n0 + chunk_tokens)
            z = (hidden[n0:n1].float() @ w.T) / temperature
            mo, so, to = m[n0:n1], s[n0:n1], t[n0:n1]
            mn = torch.maximum(mo, z.amax(-1))
            alpha = torch.exp(mo - mn)
            zc = z - mn.unsqueeze(-1)
            e = torch.exp(zc)
            if return_entropy:
                shift = torch.where(so > 0, mo - mn, torch.zeros_like(mo))
                t[n0:n1] = alpha * (to + so * shift) + (e * zc).sum(-1)
            s[n0:n1] = so * alpha + e.sum(-1)
            m[n0:n1] = mn
            local = tgt[n0:n1] - v0
            inside = (local >= 0) & (local < v1 - v0)
            picked = z.gather(-1, local.clamp(0, v1 - v0 - 1).unsqueeze(-1)).squeeze(-1)
            z_t[n0:n1] += torch.where(inside, picked, torch.zeros_like(picked))
    lse = m + torch.log(s)
    logp = torch.minimum(z_t - lse, torch.zeros_like(lse))
    ent = (torch.log(s) - t / s).clamp(min=0.0) if return_entropy else torch.empty(0, device=dev)
    if N == 0:
        lse = torch.empty(0, device=dev)
    return logp, lse, ent


def linear_backward_chunked(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    ent: torch.Tensor | None,
    g_logp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
    temperature: float,
    need_h: bool = True,
    need_w: bool = True,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    chunk_vocab: int = DEFAULT_CHUNK_VOCAB,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(d hidden, d weight) in the inputs' dtypes, recomputing each logits tile from hidden and weight; a
    gradient not needed is not computed (an empty tensor comes back)."""
    N, D = hidden.shape
    V = weight.shape[0]
    grad_h = torch.zeros(N, D, dtype=torch.float32, device=hidden.device) if need_h else hidden.new_empty(0)
    grad_w = torch.empty_like(weight) if need_w else weight.new_empty(0)
    if not (need_h or need_w):
        return grad_h, grad_w
    for v0 in range(0, V, chunk_vocab):
        v1 = min(V, v0 + chunk_vocab)
        w = weight[v0:v1].float()
        acc_w = torch.zeros(v1 - v0, D, dtype=torch.float32, device=hidden.device) if need_w else None
        for n0 in range(0, N, chunk_tokens):
            n1 = min(N, n0 + chunk_tokens)
            h = hidden[n0:n1].float()
            dz = softmax_grad_chunk(
                h @ w.T,
                target[n0:n1],
                lse[n0:n1],
                None if ent is None else ent[n0:n1],
                None if g_logp is None else g_logp[n0:n1],
                None if g_ent is None else g_ent[n0:n1],
                temperature,
                v_offset=v0,
            )
            if need_h:
                grad_h[n0:n1] += dz @ w
            if acc_w is not None:
                acc_w += dz.T @ h
        if acc_w is not None:
            grad_w[v0:v1] = acc_w.to(weight.dtype)
    return (grad_h.to(hidden.dtype) if need_h else grad_h), grad_w
