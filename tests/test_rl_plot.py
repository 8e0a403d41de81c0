"""`microcoder-train plot`: one PNG per figure, pass@1 with its s.e., a replayed step drawn once."""

from __future__ import annotations

import json

import pytest

from microcoder_fast.rl.plot import FIGURES, _series, plot_run


def _metrics(tmp_path):
    rows = [{"step": 0, "phase": "eval", "pass@1": 0.2, "pass@1_se": 0.02, "pass@1/new": 0.3, "pass@1_se/new": 0.03}]
    for s in (1, 2, 2, 3):  # step 2 twice: a run resumed from step 1 before the bookkeeping fix
        rows.append({"step": s, "reward_mean": 0.1 * s, "pass_rate": 0.1 * s, "fail_rate": 0.5, "no_code_rate": 0.1,
                     "grad_norm": 1.0 + s, "ppo_kl": 1e-4, "pg_loss": -0.01, "pg_clipfrac": 0.001})
    rows.append({"step": 3, "phase": "eval", "pass@1": 0.4, "pass@1_se": 0.03, "pass@1/new": 0.5,
                 "pass@1_se/new": 0.04})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_series_takes_the_last_row_of_a_step_and_the_standard_error(tmp_path):
    _metrics(tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert _series(rows, "reward_mean")[:2] == ([1, 2, 3], [0.1, 0.2, pytest.approx(0.3)])
    assert _series(rows, "pass@1") == ([0, 3], [0.2, 0.4], [0.02, 0.03])
    assert _series(rows, "pass@1/new")[2] == [0.03, 0.04]
    assert _series(rows, "grad_norm")[2] is None


def test_every_panel_names_its_unit_and_the_pngs_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    assert all(p.ylabel for _, panels in FIGURES.values() for p in panels)
    _metrics(tmp_path)
    names = sorted(p.name for p in plot_run(tmp_path))
    assert names == ["optimisation.png", "pass_at_1.png", "reward.png"]  # no data for the others: not drawn
    assert all((tmp_path / "plots" / n).stat().st_size > 5000 for n in names)


def test_missing_metrics_names_the_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="give the run directory"):
        plot_run(tmp_path)
