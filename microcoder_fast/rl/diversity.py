"""Output diversity of groups of responses, in [0, 1]: the metrics and their registry.

Computed per group of responses to the same prompt and averaged over groups (`batch_diversity`); the
temperature probe (rl/probe.py) and every RL step's ``diversity`` metric use it. Choose with
``diversity_metric``:

- ``pairwise_ngram`` (default): for every pair of responses in a group, the Jaccard distance between their
  sets of token n-grams (1 − |A ∩ B| / |A ∪ B|), averaged over n = 1 … ``diversity_max_n`` and over pairs.
  Identical responses give 0; responses sharing no n-gram give 1.
- ``distinct_ngram``: distinct n-grams in the group divided by all n-grams in the group, averaged over n.

Token lists in, floats out: imports only the standard library (no torch, no other rl module).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

Tokens = Sequence[int]


def _ngrams(tokens: Tokens, n: int) -> set[tuple[int, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def pairwise_ngram_diversity(group: Sequence[Tokens], max_n: int = 4) -> float:
    """Mean over pairs and over n = 1..max_n of the Jaccard distance between n-gram sets (see module doc)."""
    if len(group) < 2:
        return 0.0
    total, count = 0.0, 0
    for a, b in itertools.combinations(group, 2):
        per_n = []
        for n in range(1, max_n + 1):
            sa, sb = _ngrams(a, n), _ngrams(b, n)
            union = sa | sb
            if not union:  # both shorter than n: identical in this respect
                continue
            per_n.append(1.0 - len(sa & sb) / len(union))
        total += sum(per_n) / len(per_n) if per_n else 0.0
        count += 1
    return total / count


def distinct_ngram_diversity(group: Sequence[Tokens], max_n: int = 4) -> float:
    """Distinct n-grams / all n-grams within the group, averaged over n = 1..max_n (see module doc)."""
    per_n = []
    for n in range(1, max_n + 1):
        grams = [tuple(t[i : i + n]) for t in group for i in range(len(t) - n + 1)]
        if grams:
            per_n.append(len(set(grams)) / len(grams))
    return sum(per_n) / len(per_n) if per_n else 0.0


DIVERSITY_METRICS: dict[str, Callable[[Sequence[Tokens], int], float]] = {
    "pairwise_ngram": pairwise_ngram_diversity,
    "distinct_ngram": distinct_ngram_diversity,
}


def register_diversity_metric(name: str, fn: Callable[[Sequence[Tokens], int], float]) -> None:
    """Add a metric ``fn(group_of_token_lists, max_n) -> float in [0, 1]`` under ``name``."""
    DIVERSITY_METRICS[name] = fn


def batch_diversity(groups: Sequence[Sequence[Tokens]], metric: str = "pairwise_ngram", max_n: int = 4) -> float:
    """Mean of the metric over groups (each group = the responses to one prompt)."""
    if metric not in DIVERSITY_METRICS:
        raise ValueError(f"unknown diversity metric {metric!r}; registered: {sorted(DIVERSITY_METRICS)}")
    fn = DIVERSITY_METRICS[metric]
    vals = [fn(g, max_n) for g in groups if len(g) > 0]
    return sum(vals) / len(vals) if vals else 0.0
