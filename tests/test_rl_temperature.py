"""Temperature schedules (staged jumps accepted, ramps refused) and the documented selection rule."""

from __future__ import annotations

import pytest

from microcoder_fast.rl.temperature import (
    ProbeRow,
    TemperatureSchedule,
    parse_grid,
    select_temperature,
)


def test_constant_and_staged_schedule():
    s = TemperatureSchedule.parse("", 1.2)
    assert s.is_constant and s.at(0) == 1.2 and s.at(10_000) == 1.2
    s = TemperatureSchedule.parse("0.6,1.2@140", 1.0)
    assert [s.at(i) for i in (0, 139, 140, 500)] == [0.6, 0.6, 1.2, 1.2]
    s = TemperatureSchedule.parse("0.6, 1.2@100, 1.8@300", 1.0)
    assert s.at(99) == 0.6 and s.at(100) == 1.2 and s.at(299) == 1.2 and s.at(300) == 1.8


@pytest.mark.parametrize("spec", ["linear:0.6->1.2", "cosine(0.6,1.2)", "0.6->1.2", "ramp 0.6 1.2", "0.6..1.2"])
def test_continuous_ramps_refused_with_reason(spec):
    with pytest.raises(ValueError, match="ramp"):
        TemperatureSchedule.parse(spec, 1.0)


def test_staircase_disguised_ramp_refused():
    spec = ",".join(["0.6"] + [f"{0.6 + 0.05 * i:.2f}@{i}" for i in range(1, 13)])
    with pytest.raises(ValueError, match="min_stage_steps"):
        TemperatureSchedule.parse(spec, 1.0, min_stage_steps=10)
    # the same staircase is accepted when the user lowers the limit deliberately
    assert TemperatureSchedule.parse(spec, 1.0, min_stage_steps=1).at(12) == pytest.approx(1.2)


@pytest.mark.parametrize(
    "spec,msg",
    [("0.6@5,1.2@100", "step 0"), ("0.6,1.2@100,1.4@50", "increase"), ("0.6,1.2", "T@STEP"),
     ("0.6,-1@100", "> 0"), ("0.6,abc@100", "cannot read")],
)
def test_bad_schedules(spec, msg):
    with pytest.raises(ValueError, match=msg):
        TemperatureSchedule.parse(spec, 1.0)


def test_grid_parsing():
    assert parse_grid("0.6:1.8:0.2") == [0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8]
    assert parse_grid("1.0, 1.2") == [1.0, 1.2]
    with pytest.raises(ValueError, match="probe_temperatures"):
        parse_grid("a,b")


def _rows(divs, codes):
    temps = [0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8]
    return [ProbeRow(t, d, c, 0.0, 10.0) for t, d, c in zip(temps, divs, codes)]


def test_selection_rule():
    rows = _rows([0.3, 0.45, 0.55, 0.65, 0.75, 0.9, 0.95], [1.0] * 7)
    t, why = select_temperature(rows, 0.6, 0.85, 0.5)
    assert t == 1.2 and "lowest" in why
    # the code rate collapses at high T: those temperatures are not admissible
    rows = _rows([0.3, 0.45, 0.55, 0.58, 0.9, 0.95, 0.97], [1.0, 1.0, 1.0, 0.9, 0.4, 0.2, 0.1])
    t, why = select_temperature(rows, 0.6, 0.85, 0.5)
    assert t == 1.2 and "closest" in why
    rows = _rows([0.3] * 7, [0.1] * 7)
    t, why = select_temperature(rows, 0.6, 0.85, 0.5)
    assert "warm-up" in why
