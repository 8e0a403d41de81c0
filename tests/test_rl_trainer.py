"""The trainer: batch layout, one GRPO update lowers the loss, micro-batching is exact, checkpoint → resume
is bit-for-bit, and the default run end to end."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from microcoder_fast.ops.grpo_loss import grpo_loss
from microcoder_fast.rl.config import load_config
from microcoder_fast.rl.model import build_tiny_model
from microcoder_fast.rl.batching import make_batch
from microcoder_fast.rl.policy import response_logprobs, set_compute_dtype
from microcoder_fast.rl.update import grpo_update


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    d = build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0, hidden_size=64, num_layers=1, num_heads=2,
                         num_kv_heads=1, intermediate_size=128)
    return AutoModelForCausalLM.from_pretrained(d)


def _fixed_batch():
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, 250, (n,), generator=g).tolist() for n in (5, 3, 7, 4)]
    resps = [torch.randint(1, 250, (n,), generator=g).tolist() for n in (6, 2, 4, 5)]
    return make_batch(prompts, resps, pad=0)


def test_make_batch_layout():
    b = make_batch([[5, 6, 7], [8]], [[1, 2], [3, 4, 9]], pad=0)
    assert b.prompt_width == 3
    assert b.input_ids.tolist() == [[5, 6, 7, 1, 2, 0], [0, 0, 8, 3, 4, 9]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert b.position_ids[1, 2:].tolist() == [0, 1, 2, 3]  # positions count from the first real token
    assert b.responses.tolist() == [[1, 2, 0], [3, 4, 9]]
    assert b.response_mask.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_logprobs_independent_of_padding(tiny):
    # a sequence's response log-probs do not depend on what else is in the batch (left padding is exact)
    alone = make_batch([[5, 6, 7]], [[1, 2]], pad=0)
    padded = make_batch([[5, 6, 7], [8, 9, 10, 11, 12, 13]], [[1, 2], [3, 4, 9, 9]], pad=0)
    with torch.no_grad():
        a, _ = response_logprobs(tiny, alone, slice(0, 1), 1.2)
        p, _ = response_logprobs(tiny, padded, slice(0, 1), 1.2)
    assert torch.allclose(a[0, :2], p[0, :2], atol=1e-5)


def _cfg(**kw):
    base = {"train_batch_size": "2", "group_size": "2", "ppo_mini_batch_size": "2", "ppo_micro_batch_size": "4",
            "grad_clip": "1e9", "max_response_length": "8"}
    base.update({k: str(v) for k, v in kw.items()})
    return load_config(None, base)


def _loss(model, b, old, adv, temp=1.2):
    lp, _ = response_logprobs(model, b, slice(None), temp)
    return float(grpo_loss(lp, old, adv, b.response_mask)[0].detach())


def test_one_update_lowers_the_loss(tiny):
    model = copy.deepcopy(tiny)
    b = _fixed_batch()
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    with torch.no_grad():
        old, _ = response_logprobs(model, b, slice(None), 1.2)
    before = _loss(model, b, old, adv)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    metrics, norms = grpo_update(model, opt, None, b, old, adv, None, 1.2, _cfg())
    after = _loss(model, b, old, adv)
    assert after < before - 1e-4
    assert len(norms) == 1 and norms[0] > 0 and "pg_clipfrac" in metrics
    # zero advantages: no gradient, no change
    model2 = copy.deepcopy(tiny)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.5)
    grpo_update(model2, opt2, None, b, old, torch.zeros(4), None, 1.2, _cfg())
    assert all(torch.equal(p, q) for p, q in zip(model2.parameters(), tiny.parameters()))


def test_bf16_compute_keeps_fp32_master_weights(tiny):
    """dtype=bfloat16 means bf16 compute (autocast) on fp32 parameters: an AdamW step at lr 1e-6 moves the
    weights, where the same step on bf16 parameters is lost to rounding."""
    b = _fixed_batch()
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    mixed = copy.deepcopy(tiny)
    set_compute_dtype(mixed, torch.bfloat16)
    with torch.no_grad():
        old, _ = response_logprobs(mixed, b, slice(None), 1.2)
        ref, _ = response_logprobs(tiny, b, slice(None), 1.2)
    assert old.dtype == torch.float32
    assert 0 < (old - ref).abs().max() < 0.1  # computed in bf16, close to the fp32 forward
    pure = copy.deepcopy(tiny).to(torch.bfloat16)
    for m in (mixed, pure):
        opt = torch.optim.AdamW(m.parameters(), lr=1e-6, weight_decay=0.0)
        grpo_update(m, opt, None, b, old, adv, None, 1.2, _cfg())
    moved_mixed = sum(int((p.detach() != q).sum()) for p, q in zip(mixed.parameters(), tiny.parameters()))
    moved_pure = sum(int((p.detach() != q.to(torch.bfloat16)).sum()) for p, q in zip(pure.parameters(),
                                                                                      tiny.parameters()))
    n = sum(p.numel() for p in tiny.parameters())
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    assert moved_mixed > n // 2 and moved_pure < n // 10


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_micro_batching_matches_one_big_batch(tiny, agg):
    b = _fixed_batch()
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    with torch.no_grad():
        old, _ = response_logprobs(tiny, b, slice(None), 1.2)
    outs = []
    for micro in (4, 1):
        m = copy.deepcopy(tiny)
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        grpo_update(m, opt, None, b, old, adv, None, 1.2, _cfg(ppo_micro_batch_size=micro, loss_agg=agg))
        outs.append([p.detach().clone() for p in m.parameters()])
    for p, q in zip(*outs):
        assert torch.allclose(p, q, atol=1e-6)


def _run(tmp_path, name, **kw):
    from microcoder_fast.rl.trainer import Trainer

    args = {"run_dir": str(tmp_path / name), "engine": "hf", "tiny_hidden_size": 64, "tiny_num_layers": 1,
            "tiny_num_heads": 2, "tiny_num_kv_heads": 1, "tiny_intermediate_size": 128, "train_batch_size": 2,
            "group_size": 2, "ppo_mini_batch_size": 1, "ppo_micro_batch_size": 2, "max_response_length": 8,
            "eval_max_response_length": 8, "sft_steps": 2, "sft_batch_size": 2, "eval_before": False,
            "eval_every": 0, "eval_max_problems": 1, "eval_samples": 1, "progress": False, "lr": 1e-2,
            "judge_workers": 1, "log_completions": 1}
    args.update(kw)
    cfg = load_config(None, {k: str(v) for k, v in args.items()})
    t = Trainer(cfg)
    try:
        t.train()
    finally:
        t.close()
    return t


@pytest.mark.slow
def test_checkpoint_resume_is_bit_for_bit(tmp_path):
    straight = _run(tmp_path, "a", total_steps=3, save_every=0)
    _run(tmp_path, "b", total_steps=1, save_every=1)
    resumed = _run(tmp_path, "b", total_steps=3, save_every=1, resume="auto")
    sa, sb = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(straight.optimizer.state[next(iter(straight.optimizer.state))]["exp_avg"],
                       resumed.optimizer.state[next(iter(resumed.optimizer.state))]["exp_avg"])
    ma = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    steps_a = {m["step"]: m["reward_mean"] for m in ma if "reward_mean" in m}
    steps_b = {m["step"]: m["reward_mean"] for m in mb if "reward_mean" in m}
    assert steps_a == steps_b and sorted(steps_a) == [1, 2, 3]
    # the checkpoint is an HF model directory (what vLLM loads), with optimiser, scheduler, RNG and data position
    ck = tmp_path / "b" / "checkpoints" / "step_000003"
    for f in ("model/config.json", "model/model.safetensors", "model/tokenizer.json", "optimizer.pt",
              "scheduler.pt", "rng.pt", "state.json"):
        assert (ck / f).is_file(), f
    assert json.loads((ck / "state.json").read_text())["data_position"] == 6


@pytest.mark.slow
def test_resume_keeps_before_rl_numbers_and_writes_each_step_once(tmp_path, capsys):
    """A run interrupted after step 2 with its last checkpoint at step 1: the resumed run replays step 2, and
    metrics.jsonl still holds each step (and each evaluation) once; summary.json keeps the before-RL pass@1
    that only the first part measured; config.yaml names the directory used."""
    import yaml

    first = _run(tmp_path, "r", total_steps=2, save_every=1, keep_checkpoints=0, eval_before=True, eval_every=1)
    before = json.loads((tmp_path / "r" / "summary.json").read_text())["pass@1_before"]
    ck1 = tmp_path / "r" / "checkpoints" / "step_000001"
    assert first.eval_before["pass@1_before"] == before
    resumed = _run(tmp_path, "r", total_steps=3, save_every=1, eval_before=True, eval_every=1, resume=str(ck1))
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "reward_mean" in r] == [1, 2, 3]
    assert [r["step"] for r in rows if r.get("phase") == "eval"] == [0, 1, 2, 3]  # before, at 1 and 2, after
    comps = [json.loads(x)["step"] for x in (tmp_path / "r" / "completions.jsonl").read_text().splitlines()]
    assert sorted(set(comps)) == [1, 2, 3] and len(comps) == 3  # log_completions=1 per step, once each
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["pass@1_before"] == before and resumed.eval_before["pass@1_before"] == before
    assert "held-out pass@1 at step 2: " in capsys.readouterr().out
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["run_dir"] == str(tmp_path / "r")


def test_equal_reward_steps_warn_once_per_streak():
    from microcoder_fast.rl.report import EqualRewardWatch

    w = EqualRewardWatch(after=3)
    said = [w.update(v, step) for step, v in enumerate([1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0], 1)]
    assert [i + 1 for i, m in enumerate(said) if m] == [6]  # steps 4-6 are the first three in a row
    assert "steps 4-6" in said[5] and "advantages are 0" in said[5]


def test_quiet_libraries_turns_off_hf_progress_bars():
    import warnings

    from transformers.utils import logging as hf_logging

    from microcoder_fast.rl.report import quiet_libraries

    with warnings.catch_warnings():  # quiet_libraries adds filters: keep them inside this test
        try:
            hf_logging.enable_progress_bar()  # an earlier trainer run with progress=false turned them off
            quiet_libraries(progress=True)
            assert hf_logging.is_progress_bar_enabled()
            quiet_libraries(progress=False)
            assert not hf_logging.is_progress_bar_enabled()
        finally:
            hf_logging.enable_progress_bar()
