"""Config resolution and validation: presets, files, overrides, and clear errors for user mistakes."""

from __future__ import annotations

import pytest
import yaml

from microcoder_fast.rl.config import ConfigError, TrainConfig, load_config, parse_overrides, save_config


def test_paper_defaults_are_the_dataclass_defaults():
    c = TrainConfig()
    assert (c.train_batch_size, c.group_size, c.max_response_length, c.temperature) == (64, 8, 4096, 1.2)
    assert (c.eps_low, c.eps_high, c.kl_coef, c.loss_agg) == (0.2, 0.28, 0.0, "token-mean")
    assert (c.truncation_masking, c.mask_rho, c.repetition_window, c.ppo_epochs) == ("conditional", 0.1, 128, 1)
    assert c.adv_std == "unbiased" and c.mask_predicate == "not_failed"


def test_embedded_preset_unless_named_with_or_without_a_file(tmp_path):
    c = load_config(None, {})
    assert c.preset == "embedded" and c.train_data == "embedded" and c.sft_steps > 0
    f = tmp_path / "c.yaml"
    f.write_text("total_steps: 3\n")
    c = load_config(f, {})  # a small YAML changes the demo run, not the scale
    assert c.preset == "embedded" and c.train_batch_size == 16 and c.total_steps == 3
    f.write_text("preset: none\ntotal_steps: 3\n")
    c = load_config(f, {})
    assert c.preset == "none" and c.train_batch_size == 64 and c.total_steps == 3
    # a config that brings its own model or data must say which sizes it means
    f.write_text("model: some/model\n")
    with pytest.raises(ConfigError, match="model set but no preset named: add preset=none"):
        load_config(f, {})
    (tmp_path / "x.jsonl").write_text("")
    with pytest.raises(ConfigError, match="train_data set but no preset named"):
        load_config(None, {"train_data": str(tmp_path / "x.jsonl")})
    assert load_config(f, {"preset": "none"}).model == "some/model"


def test_precedence_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: embedded\ntemperature: 0.8\ngroup_size: 4\n")
    c = load_config(f, parse_overrides(["temperature=1.4", "eval_before=false"]))
    assert c.temperature == 1.4 and c.group_size == 4 and c.eval_before is False and c.train_batch_size == 16


def test_unknown_key_names_key_and_close_match(tmp_path):
    with pytest.raises(ConfigError, match=r"'temprature'.*did you mean 'temperature'"):
        load_config(None, {"temprature": "1.0"})
    f = tmp_path / "c.yaml"
    f.write_text("grop_size: 4\n")
    with pytest.raises(ConfigError, match=r"grop_size.*c\.yaml.*group_size"):
        load_config(f, {})


@pytest.mark.parametrize(
    "overrides,msg",
    [
        ({"train_batch_size": "10", "ppo_mini_batch_size": "4"}, "not divisible by ppo_mini_batch_size"),
        ({"ppo_micro_batch_size": "7"}, "ppo_micro_batch_size"),
        ({"group_size": "0"}, "group_size"),
        ({"temperature": "0"}, "temperature"),
        ({"mask_rho": "1.5"}, "mask_rho"),
        ({"loss_agg": "mean"}, "loss_agg"),
        ({"truncation_masking": "some"}, "truncation_masking"),
        ({"temperature_schedule": "linear:0.6->1.2"}, "ramp"),
        ({"temperature_schedule": "0.6,1.2@3"}, "min_stage_steps"),
        ({"group_size": "eight"}, "integer"),
        ({"eval_before": "maybe"}, "true or false"),
        ({"dual_clip": "0.5"}, "dual_clip"),
        ({"preset": "huge"}, "preset"),
    ],
)
def test_errors(overrides, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(None, overrides)


def test_bad_override_and_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["temperature"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", {})
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(f, {})


def test_resolved_config_round_trips(tmp_path):
    c = load_config(None, {"temperature": "1.4", "temperature_schedule": "0.6,1.4@20"})
    save_config(c, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml", {})
    assert again == c
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["temperature_schedule"] == "0.6,1.4@20"


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert files, "configs/*.yaml missing"
    for f in files:
        c = load_config(f, {})
        assert isinstance(c, TrainConfig)
    paper = load_config(root / "qwen3_4b_instruct_lcb_v6.yaml", {})
    assert paper.model == "Qwen/Qwen3-4B-Instruct-2507" and paper.temperature == 1.2
    assert (paper.max_response_length, paper.eval_max_response_length) == (4096, 8192)
    assert (paper.train_batch_size, paper.group_size) == (64, 8)


def test_cli_reports_config_errors(capsys):
    from microcoder_fast.cli.train import main

    with pytest.raises(SystemExit) as e:
        main(["group_sise=4"])
    assert e.value.code == 2
    assert "group_size" in capsys.readouterr().err
