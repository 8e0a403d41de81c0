"""The trainer's loss paths (rl/policy.py, rl/update.py): ``hidden``, ``fused`` and ``logits`` give the same
loss, metrics and gradients in fp32 (tied and untied embeddings); a head that is not plain linear falls back
to ``fused`` and stays exact; token-budget micro-batches equal one padded micro-batch; the on-policy first
mini-batch's old log-probs equal a separate old-policy pass."""

from __future__ import annotations

import copy

import pytest
import torch

from microcoder_fast.rl.batching import make_batch, micro_batches
from microcoder_fast.rl.config import load_config
from microcoder_fast.rl.policy import loss_path_of, resolve_loss_path, response_logprobs, set_loss_path
from microcoder_fast.rl.update import grpo_update, old_logprobs


def _qwen(tied: bool, vocab: int = 320):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied)
    return Qwen2ForCausalLM(cfg).float()


def _batch(n: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(1, 250, (3 + (5 * i) % 7,), generator=g).tolist() for i in range(n)]
    resps = [torch.randint(1, 250, (1 + (3 * i + 2) % 9,), generator=g).tolist() for i in range(n)]
    return make_batch(prompts, resps, pad=0)


def _cfg(**kw):
    base = {"train_batch_size": "4", "group_size": "2", "ppo_mini_batch_size": "4", "ppo_micro_batch_size": "4",
            "grad_clip": "1e9", "max_response_length": "9"}
    base.update({k: str(v) for k, v in kw.items()})
    return load_config(None, base)


def _one_update(model, path: str, b, cfg, old=None, fill: bool = False):
    """One GRPO update with SGD(lr=0) so the gradients stay readable; returns (metrics, grads, old)."""
    m = copy.deepcopy(model)
    set_loss_path(m, path)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, -1.0, 1.0, 0.3, -0.3])[: b.input_ids.shape[0]]
    if old is None:
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            old = response_logprobs(m, b, slice(None), 1.2, path="logits")[0]
        old = old + 0.2 * torch.randn(old.shape, generator=g)  # off-policy: the clip engages
    old = old.clone()
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    metrics, _ = grpo_update(m, opt, None, b, old, adv, None, 1.2, cfg, fill_first_old=fill)
    grads = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    return metrics, grads, old


@pytest.mark.parametrize("tied", [True, False])
def test_three_paths_same_loss_and_gradients(tied):
    model = _qwen(tied)
    assert resolve_loss_path(model, "hidden") == ("hidden", "")
    b = _batch()
    cfg = _cfg()
    ref_m, ref_g, old = _one_update(model, "logits", b, cfg)
    assert ref_m["clipfrac_high"] != [0.0] * len(ref_m["clipfrac_high"]) or any(ref_m["clipfrac_low"])
    for path in ("hidden", "fused"):
        m, g, _ = _one_update(model, path, b, cfg, old=old)
        assert set(g) == set(ref_g), path
        for k in ref_g:
            assert torch.allclose(g[k], ref_g[k], rtol=1e-4, atol=1e-6), (path, k, float((g[k] - ref_g[k]).abs().max()))
        for k in ("pg_loss", "entropy_mean", "ratio_mean", "clipfrac_low", "clipfrac_high"):
            assert m[k] == pytest.approx(ref_m[k], rel=1e-4, abs=1e-6), (path, k)
    if tied:  # the one shared matrix gets the head's and the embedding's gradient together
        assert model.lm_head.weight is model.model.embed_tokens.weight
        assert "lm_head.weight" not in ref_g and ref_g["model.embed_tokens.weight"].abs().sum() > 0
    else:
        assert ref_g["lm_head.weight"].abs().sum() > 0 and ref_g["model.embed_tokens.weight"].abs().sum() > 0


def test_vocab_larger_than_the_tokens_used():
    """A Qwen-style padded vocabulary (rows no token ever takes): the paths agree on the log-probs."""
    model = _qwen(True, vocab=1000)
    b = _batch()
    with torch.no_grad():
        want = response_logprobs(model, b, slice(None), 0.9, path="logits")[0]
        for path in ("hidden", "fused"):
            got = response_logprobs(model, b, slice(None), 0.9, path=path)[0]
            assert torch.allclose(got * b.response_mask, want * b.response_mask, atol=1e-5), path


def test_non_plain_head_falls_back_to_fused_and_stays_exact(capsys):
    """Gemma-2 soft-caps its logits: the probe sees it, the path falls back to fused, and fused equals logits."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    model = Gemma2ForCausalLM(Gemma2Config(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                           final_logit_softcapping=2.0, attn_implementation="eager")).float()
    path, why = resolve_loss_path(model, "hidden")
    assert path == "fused" and "final_logit_softcapping" in why
    b, cfg = _batch(), _cfg()
    ref_m, ref_g, old = _one_update(model, "logits", b, cfg)
    m, g, _ = _one_update(model, "fused", b, cfg, old=old)
    for k in ref_g:
        assert torch.allclose(g[k], ref_g[k], rtol=1e-4, atol=1e-6), k
    # a biased head is refused by structure
    biased = _qwen(False)
    biased.lm_head = torch.nn.Linear(64, 320, bias=True)
    assert resolve_loss_path(biased, "hidden")[0] == "fused"
    assert "bias" in resolve_loss_path(biased, "hidden")[1]


def test_token_budget_micro_batches_equal_one_padded_micro_batch():
    model = _qwen(True)
    b = _batch()
    padded_m, padded_g, old = _one_update(model, "hidden", b, _cfg(ppo_micro_batch_size=8))
    budget = 40
    groups = micro_batches(b, 0, 8, 8, budget)
    assert sorted(int(i) for g in groups for i in g) == list(range(8)) and len(groups) > 2
    for g in groups:  # within the budget (a row longer than it would run alone)
        sb = b.select(g)
        assert len(g) == 1 or sb.input_ids.numel() <= budget
    for agg in ("token-mean", "seq-mean-token-mean"):
        pm, pg, _ = _one_update(model, "hidden", b, _cfg(ppo_micro_batch_size=8, loss_agg=agg), old=old)
        tm, tg, _ = _one_update(model, "hidden", b, _cfg(ppo_max_tokens_per_micro_batch=budget, loss_agg=agg),
                                old=old)
        for k in pg:
            assert torch.allclose(tg[k], pg[k], rtol=1e-4, atol=1e-6), (agg, k)


def test_on_policy_first_mini_batch_needs_no_old_pass():
    """Two mini-batches: the first takes its old log-probs from its own forward, the second from the pass
    before any update; both equal a full old-policy pass, and so does the update."""
    model = _qwen(True)
    set_loss_path(model, "hidden")
    b = _batch()
    cfg = _cfg(ppo_mini_batch_size=2)  # 2 prompts x 2 = 4 rows per mini-batch, 2 updates
    full, fill = old_logprobs(model, b, 1.2, _cfg(ppo_mini_batch_size=2, recompute_old_logp=True))
    assert not fill
    part, fill = old_logprobs(model, b, 1.2, cfg)
    assert fill and part[:4].abs().sum() == 0 and torch.equal(part[4:], full[4:])
    m_full, g_full, _ = _one_update(model, "hidden", b, cfg, old=full)
    m_fill, g_fill, filled = _one_update(model, "hidden", b, cfg, old=part, fill=True)
    assert torch.allclose(filled, full, atol=1e-6)
    for k in g_full:
        assert torch.allclose(g_fill[k], g_full[k], rtol=1e-4, atol=1e-6), k
    assert loss_path_of(model) == "hidden"


def test_soft_cap_hidden_by_small_logits_is_still_detected():
    """A soft-cap of 30 barely touches a random model's small logits; the probe (and the config key) still see it."""
    from transformers import Qwen2ForCausalLM

    class Capped(Qwen2ForCausalLM):  # a Qwen2 with a soft-capped head and no config key saying so
        def forward(self, input_ids=None, logits_to_keep=0, **kw):  # noqa: ANN001, ANN003, ANN201
            out = super().forward(input_ids=input_ids, logits_to_keep=logits_to_keep, **kw)
            out.logits = 30.0 * torch.tanh(out.logits / 30.0)
            return out

    torch.manual_seed(0)
    plain = _qwen(True)
    capped = Capped(plain.config).float()
    capped.load_state_dict(plain.state_dict())
    before = {k: v.clone() for k, v in capped.state_dict().items()}
    path, why = resolve_loss_path(capped, "hidden")
    assert path == "fused" and "not lm_head" in why
    assert all(torch.equal(before[k], v) for k, v in capped.state_dict().items()), "the probe restores the weights"
    assert resolve_loss_path(plain, "hidden")[0] == "hidden"
