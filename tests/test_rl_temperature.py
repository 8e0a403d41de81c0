"""Temperature schedules (staged jumps accepted, ramps refused), the diversity metrics on hand-made groups,
and the documented selection rule."""

from __future__ import annotations

import pytest

from microcoder_fast.rl.temperature import (
    ProbeRow,
    TemperatureSchedule,
    batch_diversity,
    distinct_ngram_diversity,
    pairwise_ngram_diversity,
    parse_grid,
    register_diversity_metric,
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


def test_pairwise_ngram_on_hand_made_groups():
    same = [[1, 2, 3, 4]] * 4
    assert pairwise_ngram_diversity(same) == 0.0
    disjoint = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert pairwise_ngram_diversity(disjoint) == 1.0
    # [1,2,3] vs [1,2,4]: 1-grams J = 2/4 -> 0.5 distance; 2-grams {12,23} vs {12,24}: 1 - 1/3; 3-grams: 1
    d = pairwise_ngram_diversity([[1, 2, 3], [1, 2, 4]], max_n=3)
    assert d == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    # order matters beyond unigrams: same bag of tokens, different order
    assert 0.0 < pairwise_ngram_diversity([[1, 2, 3], [3, 2, 1]], max_n=2) < 1.0
    assert pairwise_ngram_diversity([[1, 2, 3]]) == 0.0  # a single response has no pair


def test_more_varied_group_scores_higher():
    low = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 6], [1, 2, 3, 4, 5]]
    high = [[1, 2, 3, 4, 5], [9, 8, 3, 4, 6], [7, 2, 8, 1, 5]]
    assert pairwise_ngram_diversity(high) > pairwise_ngram_diversity(low)
    assert distinct_ngram_diversity(high) > distinct_ngram_diversity(low)


def test_distinct_ngram():
    assert distinct_ngram_diversity([[1, 1, 1, 1]], max_n=1) == 0.25
    assert distinct_ngram_diversity([[1, 2], [3, 4]], max_n=2) == 1.0


def test_batch_diversity_and_plugins():
    groups = [[[1, 2], [1, 2]], [[1, 2], [3, 4]]]
    assert batch_diversity(groups, "pairwise_ngram", 2) == pytest.approx(0.5)
    register_diversity_metric("always_half", lambda g, n: 0.5)
    assert batch_diversity(groups, "always_half") == 0.5
    with pytest.raises(ValueError, match="unknown diversity metric"):
        batch_diversity(groups, "nope")


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
