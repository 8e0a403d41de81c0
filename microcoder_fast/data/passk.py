"""The unbiased pass@k estimator (Chen et al., 2021): with n samples of which c are correct,
pass@k = 1 - C(n - c, k) / C(n, k), the chance that k samples drawn without replacement hold a correct one;
the sampling standard error of mean pass@1 (`pass_at_1_se`); and `summarize`, pass@k over judged sample rows
(overall, by platform, by difficulty, per compare mode).

pass@k is a fraction in [0, 1] everywhere in the package (the trainer's pass@1 too). Imports nothing heavy.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` of them correct.

    Computed as ``1 - prod_{i=n-c+1..n} (1 - k / i)``, which equals ``1 - C(n-c, k) / C(n, k)`` without the
    huge binomials. Raises ``ValueError`` when ``k > n`` (the estimate needs at least k samples).
    """
    for name, v in (("n", n), ("c", c), ("k", k)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"pass_at_k: {name} must be an int, got {type(v).__name__}")
    if n < 1:
        raise ValueError(f"pass_at_k: n (samples) must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c (correct) must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k must be in [1, n={n}], got {k}; draw at least k samples per problem")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> tuple[float | None, int]:
    """Mean pass@k over problems given ``(n, c)`` pairs; problems with fewer than ``k`` samples are left
    out. Returns ``(mean or None when no problem qualifies, number of problems used)``."""
    vals = [pass_at_k(n, c, k) for n, c in counts if n >= k]
    if not vals:
        return None, 0
    return sum(vals) / len(vals), len(vals)


def pass_at_1_se(counts: Sequence[tuple[int, int]]) -> float | None:
    """Standard error of mean pass@1 over a *fixed* problem set from sampling alone: with p_i = c_i / n_i,
    sqrt(sum_i p_i (1 - p_i) / (n_i - 1)) / P (the unbiased variance of each problem's sample mean). This is
    the noise that separates two evaluations of the same problems (before vs after RL); it does not include
    the spread over which problems were chosen. None when some problem has fewer than 2 samples."""
    if not counts or any(n < 2 for n, _ in counts):
        return None
    var = sum((c / n) * (1 - c / n) / (n - 1) for n, c in counts)
    return math.sqrt(var) / len(counts)


def summarize(rows: Iterable[dict[str, Any]], modes: list[str], ks: list[int]) -> dict[str, Any]:
    """pass@k (fractions) per compare mode, overall / by platform / by difficulty, verdict histograms, errors
    and the samples whose verdicts differ between modes, from per-sample rows as ``microcoder-eval`` writes
    them (``problem_id``, ``status``, ``verdicts``: {mode: verdict}, ``platform``, ``difficulty``)."""
    rows = list(rows)
    summary: dict[str, Any] = {"samples": len(rows), "pass_at_k_unit": "fraction", "modes": {}, "errors": [],
                               "disagreements": []}
    for r in rows:
        if r["status"] == "error":
            summary["errors"].append({"line": r["line"], "index": r.get("index"), "error": r.get("error")})
    attributable = [r for r in rows if r.get("problem_id") is not None and not r.get("unknown_problem")]
    for m in modes:
        per_problem: dict[str, list[int]] = {}
        meta: dict[str, tuple[Any, Any]] = {}
        hist: Counter[str] = Counter(r["verdicts"].get(m, "NOT_JUDGED") for r in rows)
        for r in attributable:
            c = per_problem.setdefault(r["problem_id"], [0, 0])
            c[0] += 1
            c[1] += r["verdicts"].get(m) == "AC"
            meta[r["problem_id"]] = (r.get("platform"), r.get("difficulty"))

        def table(select: Any, _pp: dict[str, list[int]] = per_problem, _meta: dict = meta) -> dict[str, Any]:
            groups: dict[str, list[tuple[int, int]]] = defaultdict(list)
            for pid, (n, c) in _pp.items():
                groups[str(select(_meta[pid]))].append((n, c))
            out: dict[str, Any] = {}
            for g, counts in sorted(groups.items()):
                out[g] = {"problems": len(counts)}
                for k in ks:
                    v, used = mean_pass_at_k(counts, k)
                    out[g][f"pass@{k}"] = v
                    out[g][f"pass@{k}_problems"] = used
            return out

        summary["modes"][m] = {
            "overall": table(lambda _: "all")["all"] if per_problem else {"problems": 0},
            "by_platform": table(lambda md: md[0]),
            "by_difficulty": table(lambda md: md[1]),
            "verdicts": dict(hist.most_common()),
        }
    if len(modes) > 1:
        for r in rows:
            vs = [r["verdicts"].get(m) for m in modes]
            if r["status"] == "judged" and len(set(vs)) > 1:
                summary["disagreements"].append({"line": r["line"], "index": r.get("index"),
                                                 "problem_id": r["problem_id"], "verdicts": r["verdicts"]})
    return summary
