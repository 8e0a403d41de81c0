"""microcoder_fast.integrations.verl against the installed verl (0.9.x, --no-deps): the registered loss equals
verl's ``vanilla`` for every loss_agg_mode, the registered estimator equals verl's GRPO (masking off) and
masks as specified (on), compute_score runs through verl's own reward managers on a DataProto batch, and
the README's "Use with verl" override names what is registered."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("verl") is None:  # installed but broken must fail, not skip
    pytest.skip("verl is not installed (CI installs it with --no-deps: see .ci/run)", allow_module_level=True)
import verl  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.workers.config import FSDPActorConfig  # noqa: E402

import microcoder_fast.integrations.verl as mv  # noqa: E402
from microcoder_fast.data import encode_private_tests  # noqa: E402
from microcoder_fast.rl.model import build_byte_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ADD = {"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"], "fn_name": None}
GOOD = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
WRONG = "```python\nprint(0)\n```"


def test_import_registers_loss_and_estimator():
    assert core_algos.get_policy_loss_fn("microcoder") is mv.compute_policy_loss_microcoder
    assert core_algos.get_adv_estimator_fn("microcoder_grpo") is mv.compute_microcoder_grpo_advantage


def test_verl_imports_the_module_in_a_fresh_process_through_its_env_hook():
    """The mechanism the README documents: `import verl` imports VERL_USE_EXTERNAL_MODULES, so every process
    verl starts (driver, workers) has the loss and the estimator registered."""
    code = ("import verl\nfrom verl.trainer.ppo import core_algos as c\n"
            "print(c.get_policy_loss_fn('microcoder').__module__, c.get_adv_estimator_fn('microcoder_grpo').__module__)")
    env = dict(os.environ, VERL_USE_EXTERNAL_MODULES="microcoder_fast.integrations.verl")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["microcoder_fast.integrations.verl"] * 2


def _batch(seed=0, b=6, length=7):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(b, length, generator=g) * 3
    old = logp + (torch.rand(b, length, generator=g) - 0.5) * 3.2  # ratios from 0.2 to 5: every clip is hit
    adv = torch.randn(b, generator=g).unsqueeze(-1).expand(b, length).contiguous()
    mask = torch.ones(b, length)
    mask[1, 4:] = 0
    mask[3, 2:] = 0
    mask[5, :] = 0  # a fully masked response
    return logp, old, adv, mask


@pytest.mark.parametrize("global_info", [{}, {"dp_size": 2, "batch_num_tokens": 50, "global_batch_size": 9}],
                         ids=["local", "dp2"])
@pytest.mark.parametrize("agg", mv.AGG_MODES)
def test_policy_loss_equals_verl_vanilla(agg, global_info):
    if global_info and agg == "seq-mean-token-sum-norm":
        global_info = {**global_info, "loss_scale_factor": 11}
    cfg = FSDPActorConfig(strategy="fsdp", rollout_n=4, ppo_micro_batch_size_per_gpu=2, ppo_mini_batch_size=4,
                          clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.28, global_batch_info=global_info)
    logp, old, adv, mask = _batch()
    results = []
    for fn in (core_algos.get_policy_loss_fn("vanilla"), core_algos.get_policy_loss_fn("microcoder")):
        x = logp.clone().requires_grad_(True)
        loss, metrics = fn(old_log_prob=old, log_prob=x, advantages=adv, response_mask=mask,
                           loss_agg_mode=agg, config=cfg)
        loss.backward()
        results.append((loss.detach(), metrics, x.grad))
    (lv, mv_, gv), (lo, mo, go) = results
    torch.testing.assert_close(lo, lv, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(go, gv, atol=1e-6, rtol=1e-5)
    assert mo.keys() == mv_.keys()
    for k in mv_:
        assert mo[k] == pytest.approx(mv_[k], abs=1e-6), k
    assert mv_["actor/pg_clipfrac"] > 0 and mv_["actor/pg_clipfrac_lower"] > 0  # every branch is exercised
    print(f"{agg} {global_info or 'local'}: |dloss| {(lo - lv).abs().item():.1e} |dgrad| "
          f"{(go - gv).abs().max().item():.1e} |dclipfrac| "
          f"{max(abs(mo[k] - mv_[k]) for k in mv_):.1e}")


def test_policy_loss_refuses_rollout_weights():
    cfg = FSDPActorConfig(strategy="fsdp", rollout_n=4, ppo_micro_batch_size_per_gpu=2, ppo_mini_batch_size=4)
    logp, old, adv, mask = _batch()
    with pytest.raises(ValueError, match="rollout importance weights"):
        mv.compute_policy_loss_microcoder(old, logp, adv, mask, "token-mean", cfg, torch.ones_like(logp))


def _rewards(b=12, length=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    scores = (torch.rand(b, generator=g) > 0.5).float()
    scores[:4] = 1.0  # one group with equal rewards
    lengths = torch.randint(1, length + 1, (b,), generator=g)
    lengths[[0, 5, 6, 9]] = length  # truncated: fills response_length
    mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).float()
    tlr = torch.zeros(b, length)
    tlr[torch.arange(b), lengths - 1] = scores
    perm = torch.randperm(b, generator=g)  # verl groups by uid, not by position
    index = np.array([f"u{i // 4}" for i in range(b)], dtype=object)[perm.numpy()]
    return tlr[perm], mask[perm], index


@pytest.mark.parametrize("norm", [True, False])
def test_estimator_equals_verl_grpo_with_masking_off(monkeypatch, norm):
    monkeypatch.setenv("MICROCODER_TRUNCATION_MODE", "none")
    tlr, mask, index = _rewards()
    cfg = OmegaConf.create({"norm_adv_by_std_in_grpo": norm})
    want, _ = core_algos.compute_grpo_outcome_advantage(tlr, mask, index, norm_adv_by_std_in_grpo=norm)
    got, ret = mv.compute_microcoder_grpo_advantage(token_level_rewards=tlr, response_mask=mask, index=index,
                                                    config=cfg)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    print(f"estimator norm={norm}: max |ours - verl| {(got - want).abs().max().item():.1e}")
    assert torch.equal(got, ret)


def test_estimator_masks_truncated_passing_responses(monkeypatch):
    tlr, mask, index = _rewards()
    want, _ = core_algos.compute_grpo_outcome_advantage(tlr, mask, index)
    truncated = mask.sum(-1) == mask.shape[-1]
    passed = tlr.sum(-1) > 0
    monkeypatch.setenv("MICROCODER_TRUNCATION_RHO", "1.0")
    monkeypatch.setattr(mv, "_MASK_GENERATOR", None)
    got, _ = mv.compute_microcoder_grpo_advantage(tlr, mask, index)
    masked = truncated & passed
    assert masked.any() and (~masked).any()
    assert torch.equal(got[masked], torch.zeros_like(got[masked]))
    torch.testing.assert_close(got[~masked], want[~masked], atol=1e-6, rtol=1e-6)
    monkeypatch.setenv("MICROCODER_TRUNCATION_RHO", "0.0")
    got0, _ = mv.compute_microcoder_grpo_advantage(tlr, mask, index)
    torch.testing.assert_close(got0, want, atol=1e-6, rtol=1e-6)
    monkeypatch.setenv("MICROCODER_TRUNCATION_MODE", "all")
    got_all, _ = mv.compute_microcoder_grpo_advantage(tlr, mask, index)
    assert torch.equal(got_all[truncated], torch.zeros_like(got_all[truncated]))
    with pytest.raises(ValueError, match="groups of one size"):
        mv.compute_microcoder_grpo_advantage(tlr[:-1], mask[:-1], index[:-1])


@pytest.fixture(scope="module")
def tok():
    return build_byte_tokenizer()


def _dataproto(tok, responses, truths):
    prompts = [tok.encode("solve:")] * len(responses)
    enc = [tok.encode(r) for r in responses]
    rl = max(len(e) for e in enc)
    pl = len(prompts[0])
    pad = tok.pad_token_id
    resp = torch.tensor([e + [pad] * (rl - len(e)) for e in enc])
    attn = torch.tensor([[1] * pl + [1] * len(e) + [0] * (rl - len(e)) for e in enc])
    batch = {"prompts": torch.tensor(prompts), "responses": resp, "attention_mask": attn,
             "input_ids": torch.cat([torch.tensor(prompts), resp], 1)}
    nt = {"data_source": np.array(["microcoder"] * len(responses), dtype=object),
          "reward_model": np.array([{"ground_truth": t} for t in truths], dtype=object)}
    return DataProto.from_dict(tensors=batch, non_tensors=nt), [len(e) for e in enc]


def _lcb_truth():
    blob = encode_private_tests([{"input": "4 4\n", "output": "8\n", "testtype": "stdin"}])
    return json.dumps({"private_test_cases": blob, "public_test_cases": "[]", "metadata": "{}"})


def test_compute_score_batch_through_verl_batch_reward_manager(tok):
    from verl.workers.reward_manager import BatchRewardManager

    data, lengths = _dataproto(tok, [GOOD, WRONG, "no code here", GOOD],
                               [ADD, json.dumps(ADD), ADD, _lcb_truth()])
    manager = BatchRewardManager(tokenizer=tok, num_examine=0, compute_score=mv.compute_score_batch)
    calls = []
    real = mv._judge().outcomes
    mv._judge().outcomes = lambda *a: calls.append(len(a[0])) or real(*a)
    try:
        out = manager(data, return_dict=True)
    finally:
        del mv._judge().outcomes
    reward = out["reward_tensor"]
    assert calls == [4]  # the whole batch in one call
    assert [reward[i, n - 1].item() for i, n in enumerate(lengths)] == [1.0, 0.0, 0.0, 1.0]
    assert reward.sum().item() == 2.0
    assert out["reward_extra_info"]["judge_error"] == [0.0] * 4  # IE would show here, never as a silent 0


def test_compute_score_through_verl_reward_loading_and_naive_manager(tok):
    from verl.trainer.ppo.reward import load_reward_manager

    config = OmegaConf.create({"reward": {
        "custom_reward_function": {"path": "pkg://microcoder_fast.integrations.verl", "name": "compute_score",
                                   "reward_kwargs": {}},
        "reward_manager": {"source": "register", "name": "naive"}}})
    manager = load_reward_manager(config, tok)
    data, _ = _dataproto(tok, [GOOD, WRONG, GOOD], [ADD, ADD, _lcb_truth()])
    scores = [manager.loop.run_until_complete(manager.run_single(data[i:i + 1]))["reward_score"]
              for i in range(len(data))]
    assert scores == [1.0, 0.0, 1.0]
    assert asyncio.iscoroutinefunction(manager.run_single)


def test_readme_use_with_verl_override_names_what_is_registered():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Use with verl\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README has no 'Use with verl' section"
    blocks = re.findall(r"```bash\n(.*?)```", m.group(1), re.S)
    assert blocks
    readme = dict(re.findall(r"([\w.+]+)=(\S+)", " ".join(blocks)))
    example = dict(re.findall(r"([\w.+]+)=(\S+)", (ROOT / "examples/verl_microcoder_grpo.sh").read_text()))
    overrides = {k: v for k, v in readme.items() if "." in k or k.isupper()}  # config keys, env variables
    for key, value in overrides.items():  # the example command carries the README's override unchanged
        assert example.get(key) == value, key
    overrides.update({k: v for k, v in example.items() if "." in k and not v.startswith('"$')})
    assert overrides["actor_rollout_ref.actor.policy_loss.loss_mode"] == mv.POLICY_LOSS
    assert overrides["algorithm.adv_estimator"] == mv.ADV_ESTIMATOR
    assert overrides["reward.custom_reward_function.path"] == "pkg://microcoder_fast.integrations.verl"
    assert overrides["reward.custom_reward_function.name"] in ("compute_score", "compute_score_batch")
    assert overrides["VERL_USE_EXTERNAL_MODULES"] == "microcoder_fast.integrations.verl"
    # the overridden keys exist in verl's own trainer config (a typo would make hydra refuse the run)
    base = OmegaConf.load(Path(verl.__file__).parent / "trainer/config/_generated_ppo_trainer.yaml")
    for key in overrides:
        if "." in key and not key.startswith("+"):
            assert OmegaConf.select(base, key, default="<missing>") != "<missing>", key
