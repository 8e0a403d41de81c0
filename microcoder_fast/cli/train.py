"""`microcoder-train`: MicroCoder-GRPO. The trainer lands with issue 6; until then this says so plainly."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print(
        "microcoder-train: the trainer is not built yet in this version (see the README's status section).\n"
        "What runs today: `microcoder-info` (install report) and `python -m pytest` (the test suite).",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
