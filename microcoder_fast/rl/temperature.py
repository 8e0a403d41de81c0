"""Diversity-determined temperature: the staged schedule and the selection rule.

The paper (arXiv 2603.07777) picks one training temperature before training from the measured output
diversity of the initial model: too low (T = 0.6) and diversity falls steadily and training fails; too
high (T = 1.8) and training swings. Changing T in discrete stages (0.6 → 1.2 at step ≈140) worked; gradual
ramps destabilised training, so a continuous ramp is refused here.

**Diversity** (``diversity_metric``, always in [0, 1]) is measured by `microcoder_fast.rl.diversity`.

**Selection rule** (``select_temperature``): among the probed temperatures whose responses still contain
extractable code at a rate ≥ ``probe_min_code_rate`` (above that, sampling has dissolved into noise, the
"swinging" regime), take the *lowest* T whose diversity reaches ``probe_div_low`` (diversity must not start
below where training converges) and does not exceed ``probe_div_high``. If no T lands in the band, take the
admissible T whose diversity is closest to the band. The chosen T, the table and the reason are reported.

Pure arithmetic on numbers and strings: imports only the standard library (no torch, no other rl module).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# ------------------------------------------------------------------------------------------------------
# The schedule
# ------------------------------------------------------------------------------------------------------

_RAMP_WORDS = ("linear", "cosine", "ramp", "anneal", "->", "..", "exp", "warmup")


@dataclass(frozen=True)
class TemperatureSchedule:
    """A constant temperature or discrete stages: ``stages`` = ((start_step, T), ...) with start 0 first."""

    stages: tuple[tuple[int, float], ...]

    @classmethod
    def parse(cls, spec: str, default: float, min_stage_steps: int = 10) -> TemperatureSchedule:
        """``""`` → constant ``default``; ``"0.6,1.2@140"`` → 0.6 for steps [0, 140), then 1.2.

        Refused, with the reason: continuous ramps (``linear``/``cosine``/``a->b`` …), stages that do not
        start at increasing steps, non-positive temperatures, and stages shorter than ``min_stage_steps``
        (a staircase of tiny steps is a ramp in disguise).
        """
        spec = (spec or "").strip()
        if not spec:
            if default <= 0:
                raise ValueError(f"temperature must be > 0, got {default}")
            return cls(((0, float(default)),))
        low = spec.lower()
        if any(w in low for w in _RAMP_WORDS):
            raise ValueError(
                f"temperature_schedule {spec!r} looks like a continuous ramp; ramps are refused because the "
                "paper found gradual temperature increases destabilise training while discrete jumps work. "
                "Write discrete stages instead, e.g. '0.6,1.2@140' (0.6 until step 140, then 1.2)"
            )
        stages: list[tuple[int, float]] = []
        for i, part in enumerate(p.strip() for p in spec.split(",")):
            if "@" in part:
                t_s, step_s = part.split("@", 1)
            elif i == 0:
                t_s, step_s = part, "0"
            else:
                raise ValueError(
                    f"temperature_schedule {spec!r}: stage {part!r} needs a start step, write T@STEP (e.g. 1.2@140)"
                )
            try:
                t, step = float(t_s), int(step_s)
            except ValueError:
                raise ValueError(f"temperature_schedule {spec!r}: cannot read stage {part!r} as T@STEP") from None
            if t <= 0 or not math.isfinite(t):
                raise ValueError(f"temperature_schedule {spec!r}: temperature {t} must be a finite number > 0")
            stages.append((step, t))
        if stages[0][0] != 0:
            raise ValueError(f"temperature_schedule {spec!r}: the first stage must start at step 0")
        for (s0, _), (s1, _) in zip(stages, stages[1:]):
            if s1 <= s0:
                raise ValueError(f"temperature_schedule {spec!r}: stage starts must increase ({s0} then {s1})")
            if s1 - s0 < min_stage_steps:
                raise ValueError(
                    f"temperature_schedule {spec!r}: a stage of {s1 - s0} steps (from {s0} to {s1}) is shorter than "
                    f"min_stage_steps={min_stage_steps}; many short stages amount to a continuous ramp, which "
                    "destabilises training. Use fewer, longer stages (or lower min_stage_steps deliberately)"
                )
        return cls(tuple(stages))

    def at(self, step: int) -> float:
        t = self.stages[0][1]
        for start, temp in self.stages:
            if step >= start:
                t = temp
        return t

    @property
    def is_constant(self) -> bool:
        return len(self.stages) == 1


def parse_grid(spec: str) -> list[float]:
    """``"0.6,0.8,1.0"`` → [0.6, 0.8, 1.0]; also ``"0.6:1.8:0.2"`` (start:stop:step, inclusive)."""
    spec = spec.strip()
    try:
        if ":" in spec:
            a, b, s = (float(x) for x in spec.split(":"))
            if s <= 0 or b < a:
                raise ValueError
            n = int(round((b - a) / s))
            grid = [round(a + i * s, 6) for i in range(n + 1)]
        else:
            grid = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ValueError(
            f"probe_temperatures {spec!r}: write a comma list (0.6,0.8,1.0) or start:stop:step (0.6:1.8:0.2)"
        ) from None
    if not grid or any(t <= 0 for t in grid):
        raise ValueError(f"probe_temperatures {spec!r}: need at least one temperature, all > 0")
    return grid


@dataclass
class ProbeRow:
    temperature: float
    diversity: float
    code_rate: float  # fraction of responses with extractable code
    pass_rate: float
    mean_length: float


def select_temperature(rows: Sequence[ProbeRow], div_low: float, div_high: float, min_code_rate: float) -> tuple[float, str]:
    """Apply the documented rule (module docstring) to probe rows; return (T, reason)."""
    if not rows:
        raise ValueError("select_temperature: no probe rows")
    rows = sorted(rows, key=lambda r: r.temperature)
    admissible = [r for r in rows if r.code_rate >= min_code_rate]
    if not admissible:
        best = max(rows, key=lambda r: (r.code_rate, -r.temperature))
        return best.temperature, (
            f"no temperature kept the code rate >= {min_code_rate}; chose T={best.temperature} with the highest "
            f"code rate ({best.code_rate:.2f}) — the model may need a supervised warm-up first"
        )
    in_band = [r for r in admissible if div_low <= r.diversity <= div_high]
    if in_band:
        r = in_band[0]
        return r.temperature, (
            f"lowest T whose diversity {r.diversity:.3f} lies in [{div_low}, {div_high}] with code rate "
            f"{r.code_rate:.2f} >= {min_code_rate}"
        )

    def dist(r: ProbeRow) -> float:
        return div_low - r.diversity if r.diversity < div_low else r.diversity - div_high

    r = min(admissible, key=lambda r: (dist(r), r.temperature))
    return r.temperature, (
        f"no admissible T reached the diversity band [{div_low}, {div_high}]; chose T={r.temperature} whose "
        f"diversity {r.diversity:.3f} is closest to it"
    )
