"""`microcoder-eval`: judge LiveCodeBench-format samples and report pass@k (lands with issue 5)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("microcoder-eval: not built yet in this version (see the README's status section).", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
