"""The unbiased pass@k estimator (Chen et al., 2021): with n samples of which c are correct,
pass@k = 1 - C(n - c, k) / C(n, k), the chance that k samples drawn without replacement hold a correct one."""

from __future__ import annotations

from collections.abc import Iterable


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
