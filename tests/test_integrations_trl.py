"""microcoder_fast.integrations.trl against the installed TRL (1.16): the reward function, our head and loss
inside GRPOTrainer (parity with TRL's own per loss_type, a 2-step run), truncation masking, refusals, and
the README's "Use with TRL" snippets."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("trl") is None:  # installed but broken must fail, not skip
    pytest.skip("TRL is not installed (it is in the test extra)", allow_module_level=True)

from datasets import Dataset  # noqa: E402  (TRL depends on datasets)
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from microcoder_fast.data import encode_private_tests  # noqa: E402
from microcoder_fast.integrations.trl import (  # noqa: E402
    CodeReward,
    MicroCoderGRPOTrainer,
    check_supported,
)
from microcoder_fast.rl.model import build_tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ADD = {"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"], "fn_name": None}
GOOD = "Here you go:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
WRONG = "```python\na, b = map(int, input().split())\nprint(a - b)\n```"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0, hidden_size=64, num_layers=1, num_heads=2,
                            num_kv_heads=1, intermediate_size=128)


@pytest.fixture(scope="module")
def reward():
    r = CodeReward(workers=2)
    yield r
    r.close()


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, num_generations=4,
                max_completion_length=8, max_steps=2, logging_steps=1, report_to="none", save_strategy="no",
                learning_rate=1e-2, bf16=False, seed=0)
    base.update(kw)
    return GRPOConfig(**base)


def _dataset():
    return Dataset.from_list([{"prompt": "Add two numbers.", "tests": ADD},
                              {"prompt": "Print the sum of a and b.", "tests": ADD}])


def test_reward_plain_and_conversational_with_verdict_mix(reward):
    logged = {}
    completions = [GOOD, WRONG, "I do not know.", "```python\nprint(1 +)\n```"]
    out = reward(prompts=["p"] * 4, completions=completions, tests=[ADD] * 4,
                 log_metric=lambda name, value: logged.__setitem__(name, value))
    assert out == [1.0, 0.0, 0.0, 0.0]
    assert logged["verdict/AC"] == 0.25 and logged["verdict/WA"] == 0.25
    assert logged["verdict/NO_CODE"] == 0.25 and logged["verdict/CE"] == 0.25
    assert [o.outcome for o in reward.last_outcomes] == ["pass", "fail", "no_code", "fail"]
    chat = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": WRONG}]]
    assert reward(prompts=[[{"role": "user", "content": "p"}]] * 2, completions=chat,
                  tests=[json.dumps(ADD)] * 2) == [1.0, 0.0]


def test_reward_judges_with_any_executor_and_leaves_it_open():
    """Any object with the executor's submit plugs in (the Ray executor does); the caller keeps ownership."""
    from concurrent.futures import Future

    from microcoder_fast.executor import Result, Verdict

    class Stub:
        def __init__(self):
            self.seen, self.closed = [], False

        def submit(self, code, problem, stop_on_first_failure=True):
            self.seen.append((code, problem.tests[0].input))
            fut = Future()
            verdict = Verdict.AC if "a + b" in code else Verdict.IE if "judge fails" in code else Verdict.WA
            fut.set_result(Result(verdict, 1, len(problem.tests)))
            return fut

        def close(self):
            self.closed = True

    stub = Stub()
    r = CodeReward(executor=stub)
    ie = "```python\nprint(3)  # judge fails\n```"
    out = r(prompts=["p"] * 4, completions=[GOOD, WRONG, "no code", ie], tests=[ADD] * 4)
    assert out == [1.0, 0.0, 0.0, None]  # IE is the judge's failure: unscorable (None) for TRL, never a 0
    r.close()
    assert not stub.closed and [inp for _, inp in stub.seen] == ["1 2\n"] * 3


def test_reward_reads_livecodebench_encoding():
    blob = encode_private_tests([{"input": "[1, 2]", "output": "3", "testtype": "functional"}])
    meta = json.dumps({"func_name": "add"})
    call = "```python\nclass Solution:\n    def add(self, xs):\n        return sum(xs)\n```"
    r = CodeReward(tests_column="private_test_cases", tests_format="lcb", workers=1)
    try:
        out = r(prompts=["p"] * 2, completions=[call, call.replace("sum(xs)", "0")],
                private_test_cases=[blob] * 2, metadata=[meta] * 2,
                public_test_cases=['[{"input": "[5]", "output": "5", "testtype": "functional"}]'] * 2)
    finally:
        r.close()
    assert out == [1.0, 0.0]


def test_reward_errors_name_the_column(reward):
    with pytest.raises(KeyError, match="no dataset column 'tests'"):
        reward(prompts=["p"], completions=[GOOD], answer=["3"])
    with pytest.raises(ValueError, match="MicroCoder's tests encoding"):
        reward(prompts=["p"], completions=[GOOD], tests=[{"inputs": ["1"], "outputs": []}])


def test_refuses_what_it_cannot_express():
    for kw, needle in [({"loss_type": "cispo"}, "loss_type='cispo'"), ({"beta": 0.04}, "beta=0.04"),
                       ({"importance_sampling_level": "sequence"}, "importance_sampling_level"),
                       ({"top_entropy_quantile": 0.2}, "top_entropy_quantile")]:
        args = GRPOConfig(output_dir="/tmp/unused", use_cpu=True, report_to="none", **kw)
        with pytest.raises(ValueError, match=re.escape(needle)):
            check_supported(args)


def test_head_equals_log_softmax_of_the_full_logits(tiny_dir):
    from microcoder_fast.integrations.trl import use_linear_token_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, model.config.vocab_size, (2, 9), generator=g)
    labels = ids.clone()
    labels[0, :4] = -100
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1]
    want = torch.log_softmax(logits / 1.2, -1).gather(-1, ids[:, 1:, None]).squeeze(-1) * (labels[:, 1:] != -100)
    use_linear_token_logprobs(model, 1.2)
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    torch.testing.assert_close(out.log_probs, want, atol=1e-5, rtol=1e-5)
    assert out.entropy.shape == want.shape and (out.entropy[labels[:, 1:] != -100] > 0).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision: bf16 GEMMs, fp32 log-probs
        mixed = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, want, atol=5e-2, rtol=5e-2)
    assert torch.equal(model(input_ids=ids).logits[:, :-1], logits)  # without fused_lm_head: the model's forward
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        use_linear_token_logprobs(model, 1.2)


def _fixed_inputs(vocab):
    g = torch.Generator().manual_seed(0)
    b, p, length = 4, 5, 8
    prompt_ids = torch.randint(1, vocab, (b, p), generator=g)
    prompt_mask = torch.ones(b, p, dtype=torch.long)
    prompt_mask[1, :2] = 0  # left padding
    completion_ids = torch.randint(1, vocab, (b, length), generator=g)
    completion_mask = torch.ones(b, length, dtype=torch.long)
    completion_mask[0, 6:] = 0
    completion_mask[2, 3:] = 0
    completion_mask[3, :] = 0  # a fully masked row: grpo counts it, our seq-mean leaves it out (rescaled)
    adv = torch.tensor([1.0, -0.7, 0.4, -1.2])
    return dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                completion_mask=completion_mask, advantages=adv,
                num_items_in_batch=completion_mask.sum().float()), g


@pytest.mark.slow
def test_loss_and_gradients_equal_trl(tiny_dir, tmp_path):
    """Our head + ops.grpo_loss == TRL's tiled head + TRL's loss on one fixed batch, fp32, for each loss_type."""
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    kw = dict(reward_funcs=[lambda completions, **k: [0.0] * len(completions)], train_dataset=_dataset(),
              processing_class=tok)
    theirs = GRPOTrainer(model=copy.deepcopy(base), args=_args(tmp_path / "a", temperature=1.2, epsilon_high=0.28,
                                                                 gradient_accumulation_steps=2), **kw)
    ours = MicroCoderGRPOTrainer(model=copy.deepcopy(base), args=_args(tmp_path / "b", temperature=1.2,
                                                                       epsilon_high=0.28,
                                                                       gradient_accumulation_steps=2), **kw)
    inputs, g = _fixed_inputs(base.config.vocab_size)
    with torch.no_grad():
        seq = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        am = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
        cur, _, _ = theirs._get_per_token_logps_and_entropies(theirs.model, seq, am, 8)
    # old log-probs off by up to ±0.5 so that both clip edges are hit
    inputs["old_per_token_logps"] = cur + (torch.rand(cur.shape, generator=g) - 0.5)
    worst = {}
    for loss_type in ("grpo", "dapo", "bnpo", "dr_grpo"):
        losses, grads = [], []
        for tr in (theirs, ours):
            tr.loss_type = loss_type
            tr.current_gradient_accumulation_steps = 2
            tr.model.train()
            tr.model.zero_grad(set_to_none=True)
            loss = tr._compute_loss(tr.model, dict(inputs))
            loss.backward()
            losses.append(loss.detach())
            grads.append({n: p.grad.clone() for n, p in tr.model.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys() and grads[0]
        dl = (losses[0] - losses[1]).abs().item()
        dg = max((grads[0][n] - grads[1][n]).abs().max().item() for n in grads[0])
        worst[loss_type] = (dl, dg)
        assert losses[0].abs() > 1e-4, loss_type  # the batch exercises the loss
        torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-5)
        for n in grads[0]:
            torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-5, rtol=1e-5, msg=f"{loss_type} {n}")
    print("max |ours - TRL| (loss, grad):", {k: (f"{a:.1e}", f"{b:.1e}") for k, (a, b) in worst.items()})
    # both clip edges were active, so the clipped branches were compared too
    assert ours._metrics["train"]["clip_ratio/low_mean"][-1] > 0
    assert ours._metrics["train"]["clip_ratio/high_mean"][-1] > 0


@pytest.mark.slow
def test_two_grpo_steps_with_our_reward_head_and_loss(tiny_dir, tmp_path, reward, monkeypatch):
    from microcoder_fast import ops

    calls = []
    real = ops.linear_token_logprobs
    monkeypatch.setattr(ops, "linear_token_logprobs", lambda *a, **k: calls.append(1) or real(*a, **k))

    def length_reward(completions, **kwargs):  # varies within a group, so the update is not zero
        return [float(len(c) % 5) for c in completions]

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tr = MicroCoderGRPOTrainer(model=model, reward_funcs=[reward, length_reward], args=_args(tmp_path),
                               train_dataset=_dataset(), processing_class=tok)
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert len(logs) == 2 and calls
    assert all(h["verdict/NO_CODE"] + h["verdict/AC"] + h["verdict/WA"] + h["verdict/CE"] + h["verdict/RE"]
               + h["verdict/TLE"] + h["verdict/MLE"] + h["verdict/OLE"] + h["verdict/IE"] == pytest.approx(1.0)
               for h in logs)
    assert "clip_ratio/region_mean" in logs[0] and logs[0]["entropy"] > 0
    moved = sum(int((p.detach() != before[n]).sum()) for n, p in tr.model.named_parameters())
    assert moved > 0


@pytest.mark.slow
def test_truncation_masking_zeroes_truncated_unjudged_completions(tiny_dir, tmp_path, reward):
    """8-token completions from a random model are all truncated and hold no code: with rho = 1 every
    advantage is masked, so the step moves nothing (the same run without masking does move, test above)."""

    def length_reward(completions, **kwargs):
        return [float(len(c) % 5) for c in completions]

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tr = MicroCoderGRPOTrainer(model=model, reward_funcs=[reward, length_reward],
                               args=_args(tmp_path, max_steps=1), train_dataset=_dataset(), processing_class=tok,
                               truncation_masking={"rho": 1.0})
    tr.train()
    log = next(h for h in tr.state.log_history if "loss" in h)
    assert log["masking/truncation_rate"] == 1.0 and log["masking/mask_rate"] == 1.0
    assert log["verdict/NO_CODE"] == 1.0
    assert all(torch.equal(p.detach(), before[n]) for n, p in tr.model.named_parameters())
    with pytest.raises(ValueError, match="needs a CodeReward"):
        MicroCoderGRPOTrainer(model=model, reward_funcs=[length_reward], args=_args(tmp_path),
                              train_dataset=_dataset(), processing_class=tok, truncation_masking={"rho": 0.1})


def readme_blocks(title: str) -> list[str]:
    """The ```python blocks of the README section ``## title`` (the tests run exactly these)."""
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, f"README has no section '## {title}'"
    return re.findall(r"^```python\n(.*?)^```$", m.group(1), re.S | re.M)


@pytest.mark.slow
def test_readme_use_with_trl_runs(tiny_dir, tmp_path, monkeypatch):
    """The README block, with only the model id and the run's size swapped for a tiny local CPU run."""
    blocks = readme_blocks("Use with TRL")
    assert len(blocks) == 1
    code = blocks[0]
    swaps = {'"Qwen/Qwen3-1.7B"': repr(str(tiny_dir)),
             "max_steps=200": "max_steps=1, use_cpu=True, bf16=False, max_completion_length=8, "
                              "per_device_train_batch_size=4, num_generations=4, report_to='none', save_strategy='no'"}
    for old, new in swaps.items():
        assert code.count(old) == 1, old
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md:Use with TRL", "exec"), scope)
    trainer = scope["trainer"]
    assert trainer.state.global_step == 1 and isinstance(trainer, MicroCoderGRPOTrainer)
    assert trainer.truncation_masking.rho == 0.1


@pytest.mark.slow
def test_readme_use_the_judge_as_a_reward_runs():
    blocks = readme_blocks("Use the judge as a reward")
    assert blocks
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "README.md:Use the judge as a reward", "exec"), scope)
    assert scope["rewards"] == [1.0, 0.0, 0.0]
