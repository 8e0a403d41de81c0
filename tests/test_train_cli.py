"""`microcoder-train` as a user meets it: the preset and changed keys printed, --help-config, one-line
errors with exit status 2 and no run directory left behind, Ctrl-C's resume line, the vLLM KV-cache key."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from microcoder_fast.cli import train as cli


def _exit_code(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    return e.value.code, capsys.readouterr()


def test_config_prints_the_preset_and_where_each_changed_key_came_from(tmp_path, capsys):
    f = tmp_path / "small.yaml"
    f.write_text("total_steps: 3\n")
    cfg = cli._config(["--config", str(f), "seed=7", "eval_before=true"], "microcoder-train")
    out = capsys.readouterr().out
    assert cfg.total_steps == 3 and cfg.train_batch_size == 16 and cfg.seed == 7
    assert out.startswith("config: preset embedded (the CPU demo's sizes)")
    assert f"from {f}: total_steps=3" in out and "from command line: seed=7 eval_before=True" in out  # given: listed even at its default
    assert "from preset embedded:" in out and "max_response_length=48" in out
    f.write_text("preset: none\ntotal_steps: 3\n")
    cli._config(["--config", str(f)], "microcoder-train")
    out = capsys.readouterr().out
    assert out.startswith("config: preset none (the paper's sizes)") and "max_response_length" not in out


def test_help_config_shows_meaning_values_default_and_the_no_argument_preset(capsys):
    from microcoder_fast.rl.config import TrainConfig, key_help

    code, cap = _exit_code(["--help-config"], capsys)
    assert code == 0
    lines = {ln.split()[0]: ln for ln in cap.out.splitlines() if ln.startswith("  ") and "(" in ln}
    helps = key_help()
    for f in dataclasses.fields(TrainConfig):
        assert f.name in lines, f.name
        assert helps[f.name] and lines[f.name].endswith(helps[f.name])
    assert "= 64 [no-argument run: 16]" in lines["train_batch_size"]
    assert "one of constant, cosine" in lines["lr_schedule"]
    assert "auto: the latest checkpoint" in lines["resume"]


@pytest.mark.parametrize("override, msg", [
    ("train_data=missing.jsonl", "train_data='missing.jsonl': no such file"),
    ("eval_data=lcb:nope.jsonl:v6", "no such file 'nope.jsonl'"),
    ("resume=true", "write resume=auto"),
    ("resume=runs/old/checkpoints/step_000001", "no checkpoint there"),
    ("model=/some/model", "add preset=none"),
    ("temprature=1.0", "did you mean 'temperature'"),
])
def test_user_errors_exit_2_in_one_line_and_leave_no_run_directory(override, msg, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, cap = _exit_code([override], capsys)  # a missing file is named before the missing preset
    assert code == 2 and msg in cap.err
    assert cap.err.count("\n") == 1 and "Traceback" not in cap.err
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_prints_the_checkpoint_and_the_resume_command(tmp_path, capsys, monkeypatch):
    import microcoder_fast.rl.trainer as trainer_mod

    run_dir = tmp_path / "runs" / "demo"
    ck = run_dir / "checkpoints" / "step_000004"
    closed = []

    class Interrupted:
        def __init__(self, cfg):
            self.cfg, self.run_dir, self.step, self.ckpt_to_load = cfg, run_dir, 5, None
            ck.mkdir(parents=True)
            (ck / "state.json").write_text("{}")

        def train(self):
            raise KeyboardInterrupt

        def close(self):  # an impatient second Ctrl-C lands in the clean-up
            closed.append(True)
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod, "Trainer", Interrupted)
    for var in ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(var, os.environ.get(var, "0"))  # restored after the test: _env sets them
    assert cli.main(["seed=3", "save_every=2"]) == 130 and closed == [True]
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"last checkpoint {ck}" in err
    assert err.endswith(f"resume with: microcoder-train seed=3 save_every=2 run_dir={run_dir} resume={ck}")


def test_vllm_kv_cache_space_comes_from_the_config_key(monkeypatch, capsys):
    for var in ("VLLM_ENABLE_V1_MULTIPROCESSING", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(var, os.environ.get(var, "0"))
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    cfg = cli._config(["vllm_kv_cache_space_gb=3"], "microcoder-train")
    cli._env(cfg)
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "3"


def test_resume_command_replaces_earlier_run_dir_and_resume():
    cmd = cli.resume_command(["--config", "my file.yaml", "resume=auto", "run_dir=x", "lr=1e-3"], Path("runs/a"),
                             Path("runs/a/checkpoints/step_000002"))
    assert cmd == ("microcoder-train --config 'my file.yaml' lr=1e-3 run_dir=runs/a "
                   "resume=runs/a/checkpoints/step_000002")
