"""The trainer's problems and prompts: which split a data spec names, the prompt text and its token ids
(with the ``max_prompt_length`` filter), the supervised target of a problem, and the prompts of each step.

Problems in, token ids out: uses ``microcoder_fast.data`` and a tokenizer. Must not import torch's model
side, the executor, or any other ``rl`` module except ``rl.report`` (for the log line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microcoder_fast.data.problem import CodeProblem
from microcoder_fast.rl.report import log


def load_split(spec: str, split: str) -> list[CodeProblem]:
    """``embedded`` → the embedded set's ``split``; ``lcb:PATH[:RELEASE]``; otherwise a problem file path."""
    from microcoder_fast import data

    if spec == "embedded":
        return data.load_embedded("heldout" if split == "eval" else "train")
    if spec.startswith("lcb:"):
        parts = spec.split(":")
        path = parts[1]
        release = parts[2] if len(parts) > 2 else None
        if not Path(path).is_file():
            raise FileNotFoundError(f"{split} data {spec!r}: file {path!r} does not exist")
        return data.load_lcb(path, release=release) if release else data.load_lcb(path)
    if not Path(spec).is_file():
        raise FileNotFoundError(
            f"{split} data {spec!r} is neither 'embedded', 'lcb:PATH[:RELEASE]' nor an existing file"
        )
    return data.load_problems(spec)


def render_prompt(problem: CodeProblem, tokenizer: Any, system: bool) -> str:
    from microcoder_fast.data import build_prompt

    if system:
        return build_prompt(problem, tokenizer)
    return build_prompt(problem, tokenizer, system=None)


def sft_target(problem: CodeProblem) -> str:
    return f"```python\n{problem.solution.strip()}\n```"


def encode_prompts(problems: list[CodeProblem], tokenizer: Any, system: bool, max_prompt_length: int,
                   what: str) -> tuple[list[CodeProblem], list[list[int]]]:
    """The problems whose prompt fits ``max_prompt_length`` tokens, and those prompts' token ids."""
    keep, ids = [], []
    for p in problems:
        t = tokenizer(render_prompt(p, tokenizer, system), add_special_tokens=False)["input_ids"]
        if len(t) <= max_prompt_length:
            keep.append(p)
            ids.append(t)
    if len(keep) < len(problems):
        log(f"{what}: skipped {len(problems) - len(keep)} prompt(s) longer than max_prompt_length="
            f"{max_prompt_length}")
    if not keep:
        raise ValueError(f"{what}: no problem left after the max_prompt_length filter; raise max_prompt_length")
    return keep, ids


def step_prompts(step: int, n_problems: int, batch: int, seed: int) -> list[int]:
    """Prompt indices of ``step``: consecutive slices of per-epoch permutations (seeded by epoch)."""
    import torch

    out: list[int] = []
    pos = step * batch
    while len(out) < batch:
        epoch, off = divmod(pos, n_problems)
        perm = torch.randperm(n_problems, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
        take = min(batch - len(out), n_problems - off)
        out += perm[off : off + take]
        pos += take
    return out
