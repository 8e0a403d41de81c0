"""Problem formats (LiveCodeBench, HumanEval, MicroCoder JSONL), prompts, code extraction, pass@k, and the
embedded tiny problem set.

Every loader returns ``list[CodeProblem]``; ``CodeProblem.to_problem()`` gives the executor's ``Problem``.
Names are imported lazily, so ``import microcoder_fast.data`` pulls in neither torch, transformers nor the
executor's workers (problems use only its plain types, ``microcoder_fast.executor.types``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "CodeProblem": "problem",
    "TestCase": "problem",  # the executor's TestCase (microcoder_fast.executor.types)
    "index_by_id": "problem",
    "load_lcb": "lcb",
    "parse_lcb_row": "lcb",
    "decode_private_tests": "lcb",
    "encode_private_tests": "lcb",
    "RELEASE_WINDOWS": "lcb",
    "release_window": "lcb",
    "UnsafePickleError": "lcb",
    "load_humaneval": "humaneval",
    "humaneval_program": "humaneval",
    "load_microcoder": "microcoder",
    "save_microcoder": "microcoder",
    "filter_by_pass_rate": "microcoder",
    "load_problems": "microcoder",
    "build_prompt": "prompts",
    "build_messages": "prompts",
    "extract_code": "extract",
    "Extraction": "extract",
    "pass_at_k": "passk",
    "mean_pass_at_k": "passk",
    "pass_at_1_se": "passk",
    # The embedded tiny problem set (microcoder_fast/data/embedded.py, owned by the trainer side).
    "load_embedded": "embedded",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'microcoder_fast.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
