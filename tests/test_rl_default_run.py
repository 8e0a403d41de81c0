"""The no-argument default run, end to end, through the CLI (sizes trimmed with key=value overrides so the
test fits CI's budget; the untrimmed default is timed in the README)."""

from __future__ import annotations

import json

import pytest

REQUIRED = ["reward_mean", "pass_rate", "no_code_rate", "length_mean", "length_max", "truncation_rate", "mask_rate",
            "repetition_rate", "diversity", "entropy", "pg_clipfrac", "clipfrac_low", "clipfrac_high", "ppo_kl",
            "grad_norm", "lr", "time_generate_s", "time_judge_wait_s", "time_old_logp_s", "time_update_s",
            "time_sync_s", "tokens_per_s", "temperature", "logprob_gap_engine"]


@pytest.mark.slow
def test_default_run_end_to_end(tmp_path, capsys):
    from microcoder_fast.cli.train import main

    run = tmp_path / "run"
    rc = main([f"run_dir={run}", "total_steps=6", "eval_every=3", "progress=false"])
    assert rc == 0
    captured = capsys.readouterr()
    out = captured.out
    # progress=false is quiet: no HF progress bars for the model shards written or the weights loaded
    assert "Loading weights" not in captured.err and "Writing model shards" not in captured.err
    assert out.startswith("config: preset embedded")
    assert "held-out pass@1 (fraction)   before RL   after RL" in out
    assert "held-out pass@1 before RL: " in out and "held-out pass@1 after RL: " in out and "(sampling s.e.)" in out
    summary = json.loads((run / "summary.json").read_text())
    assert 0.0 <= summary["pass@1_before"] <= 1.0 and 0.0 <= summary["pass@1_after"] <= 1.0
    assert 0.0 <= summary["pass@1_before_se"] <= 0.5 and 0.0 <= summary["pass@1_after_se"] <= 0.5
    # pass@1 per held-out kind (new statements of trained tasks, unseen combinations), printed and saved
    for kind in ("new_statement", "new_combination"):
        assert f"  {kind} " in out
        assert 0.0 <= summary[f"pass@1_before/{kind}"] <= 1.0 and 0.0 <= summary[f"pass@1_after/{kind}"] <= 1.0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # the held-out eval covers every held-out problem of the embedded set with the preset's samples each
    from microcoder_fast.data.embedded import load_embedded
    from microcoder_fast.rl.config import PRESETS

    evals = [r for r in rows if "pass@1" in r]
    n_held, k = len(load_embedded("heldout")), PRESETS["embedded"]["eval_samples"]
    assert [r["step"] for r in evals] == [0, 3, 6]
    held = load_embedded("heldout")
    for r in evals:
        assert r["eval_problems"] == n_held and r["eval_samples_total"] == n_held * k
        # the overall pass@1 is the problem-weighted mean of the per-kind ones
        kinds = {p.metadata["heldout_kind"] for p in held}
        assert sum(r[f"eval_problems/{q}"] for q in kinds) == n_held
        assert r["pass@1"] == pytest.approx(sum(r[f"pass@1/{q}"] * r[f"eval_problems/{q}"] for q in kinds) / n_held)
        assert r["pass@1_se"] is not None and 0.0 <= r["pass@1_se"] <= 0.5
        assert r["pass@1"] * r["eval_samples_total"] == pytest.approx(round(r["pass@1"] * r["eval_samples_total"]))
    # the supervised warm-up makes the model answer with code (a random model never does)
    first_eval = next(r for r in rows if r.get("phase") == "eval")
    assert first_eval["step"] == 0 and first_eval["eval_no_code_rate"] < 0.5
    steps = [r for r in rows if "reward_mean" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    for r in steps:
        missing = [k for k in REQUIRED if k not in r]
        assert not missing, missing
        assert 0.0 <= r["reward_mean"] <= 1.0 and r["pass_rate"] + r["fail_rate"] + r["no_code_rate"] == pytest.approx(1.0)
    # held-out evals every 3 steps: rows of their own (phase eval), printed, never merged into a training row
    assert not any("pass@1" in r for r in steps)
    assert [r["step"] for r in rows if r.get("phase") == "eval"] == [0, 3, 6]
    assert "held-out pass@1 at step 3: " in out
    assert sum(r["reward_mean"] for r in steps) > 0  # some rewards were earned, so the policy gradient was live
    assert any(r["grad_norm"] > 0 for r in steps)
    comps = [json.loads(x) for x in (run / "completions.jsonl").read_text().splitlines()]
    assert comps and {"step", "problem", "text", "reward", "outcome", "truncated", "masked"} <= set(comps[0])
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["total_steps"] == 6 and saved["run_dir"] == str(run)
    # the final checkpoint is an HF directory that loads
    from transformers import AutoModelForCausalLM

    ck = sorted((run / "checkpoints").glob("step_*"))[-1]
    AutoModelForCausalLM.from_pretrained(ck / "model")
    pytest.importorskip("matplotlib")
    assert main(["plot", str(run)]) == 0
    assert (run / "plots" / "reward.png").is_file() and (run / "plots" / "pass_at_1.png").is_file()
