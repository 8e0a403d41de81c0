"""`python -m microcoder_fast` / `microcoder-info`: print what this install can do.

Imports only ``microcoder_fast.info``.
"""

from __future__ import annotations

import argparse
import json
import sys

from microcoder_fast.info import collect, format_info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="microcoder-info", description="Show what this install can do.")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    info = collect()
    print(json.dumps(info, indent=2, default=str) if args.json else format_info(info))
    return 0 if info["extension"].get("built") else 1


if __name__ == "__main__":
    sys.exit(main())
