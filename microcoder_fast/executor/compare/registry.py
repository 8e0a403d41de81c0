"""The registry of compare modes: THE one list of mode names (``MODES``) and how to look one up.

Every other place that needs the mode names (the executor, ``microcoder-eval --compare``, the trainer's
``compare`` config key) reads them from here; adding a mode means adding one module and one line below.
Imports the standard library and this package's mode modules only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from microcoder_fast.executor.compare import default, lcb, microcoder


@dataclass(frozen=True)
class Mode:
    """One compare mode: ``explain_stdout(out, exp, abs_tol, rel_tol)`` compares a program's stdout with the
    expected text, ``explain_value(actual, expected, abs_tol, rel_tol)`` a decoded call-mode return value
    with the decoded expected JSON. Both return ``None`` for a match, else a short reason."""

    name: str
    explain_stdout: Callable[[str, str, float, float], str | None]
    explain_value: Callable[[object, object, float, float], str | None]


_REGISTRY: dict[str, Mode] = {
    m.__name__.rsplit(".", 1)[1]: Mode(m.__name__.rsplit(".", 1)[1], m.explain_stdout, m.explain_value)
    for m in (default, lcb, microcoder)
}

#: The compare mode names, the default first.
MODES: tuple[str, ...] = tuple(_REGISTRY)


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`MODES`, else raise ``ValueError`` naming the valid ones."""
    if mode not in _REGISTRY:
        raise ValueError(f"unknown compare mode {mode!r}: use one of {', '.join(repr(m) for m in MODES)}")
    return mode


def get_mode(mode: str) -> Mode:
    """The :class:`Mode` named ``mode`` (``ValueError`` naming the valid ones if there is none)."""
    return _REGISTRY[check_mode(mode)]


def parse_modes(spec: str | Iterable[str]) -> tuple[str, ...]:
    """One or more mode names, from ``"default"``, ``"default,lcb"`` or a sequence of names, checked:
    ``ValueError`` for an unknown name, a repeated one or none at all. The first is the primary mode."""
    if isinstance(spec, str):
        names = [m.strip() for m in spec.split(",") if m.strip()]
    else:
        try:
            names = list(spec)
        except TypeError:
            raise TypeError(f"compare must be a mode name or a sequence of them, got {type(spec).__name__}") from None
        if not all(isinstance(m, str) for m in names):
            raise TypeError(f"compare modes must be strings, got {names!r}")
    if not names:
        raise ValueError(f"no compare mode given in {spec!r}: use one or more of {', '.join(MODES)}")
    for m in names:
        check_mode(m)
    if len(set(names)) != len(names):
        raise ValueError(f"compare modes {spec!r} name a mode twice")
    return tuple(names)
