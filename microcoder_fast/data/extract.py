"""Turn a model completion into a program: the last fenced Python block, else the whole text if it parses.

"No code found" (``status == "no_code"``) is its own outcome, distinct from code that is wrong: the trainer's
conditional truncation mask needs to know a response gave no answer rather than a wrong one.

Rules, in order:

1. Line endings are normalised (CRLF / CR → LF).
2. Fenced blocks are found line by line: an opening fence is a line of three or more backticks (or tildes),
   optionally indented, followed by an info string; the block closes at a line holding only a fence of the
   same character at least as long. Python blocks are those whose info string starts with ``python``,
   ``python3``, ``py`` or is empty; other languages (```json, ```bash, ```cpp, ...) are skipped.
3. The last *closed* Python block wins (models restate or fix their code; the final block is the answer).
   Its content is returned even when it does not parse: that is wrong code, which the judge reports (CE).
4. A final Python block that was never closed (a truncated completion, or a stop sequence that ate the
   closing fence) is used when its content parses; otherwise the last closed block before it is used, and
   with none, the outcome is ``no_code`` (a cut-off half program is not an answer).
5. With no Python block at all, the whole text is the program if it parses and holds at least one real
   statement (a bare name or constant, e.g. the word ``Hello``, does not count); else ``no_code``.

Imports only the standard library; never torch, the executor, ``ops`` or ``rl``.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import textwrap
import warnings
from typing import Literal

_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_TAG = re.compile(r"\{?\.?([A-Za-z0-9_+#-]*)")
_PY_TAGS = {"", "python", "python3", "py", "py3", "python2"}


@dataclasses.dataclass(frozen=True)
class Extraction:
    """``code`` is the program (``None`` exactly when ``status == "no_code"``); ``reason`` says how it was
    found or why nothing was."""

    code: str | None
    status: Literal["ok", "no_code"]
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclasses.dataclass
class _Block:
    tag: str
    lines: list[str]
    closed: bool

    @property
    def text(self) -> str:
        return textwrap.dedent("\n".join(self.lines)).strip("\n") + "\n"


def _blocks(text: str) -> list[_Block]:
    blocks: list[_Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence = m.group("fence")
        info = m.group("info").strip()
        tag = _TAG.match(info).group(1).lower()  # "python", "py", "python:sol.py", "{.python}", ...
        close = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            body.append(lines[j])
            j += 1
        blocks.append(_Block(tag=tag, lines=body, closed=j < len(lines)))
        i = j + 1
    return blocks


def parse_quietly(code: str) -> ast.Module:
    """``ast.parse`` without the warnings the parser emits about the *parsed* code (invalid escape sequences:
    DeprecationWarning, SyntaxWarning from 3.12): a model's program is not this process's code, its warnings
    are noise on the trainer's terminal, and under ``-W error`` they would turn valid code into "no code"."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(code)


def syntax_error(code: str) -> str | None:
    """Why ``code`` does not parse as Python (``"SyntaxError: ... (line N)"``), or ``None`` when it parses."""
    try:
        parse_quietly(code)
    except SyntaxError as e:
        return f"{type(e).__name__}: {e.msg} (line {e.lineno})"
    except ValueError as e:  # null bytes
        return f"ValueError: {e}"
    return None


def parses(code: str) -> bool:
    """Whether ``code`` parses as Python (the one copy; `data.humaneval` uses it too)."""
    return syntax_error(code) is None


def _looks_like_program(code: str) -> bool:
    try:
        tree = parse_quietly(code)
    except (SyntaxError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Constant)):
            continue
        return True
    return False


def extract_code(text: str) -> Extraction:
    """Extract the program from a completion; see the module docstring for the rules."""
    if not isinstance(text, str):
        raise TypeError(f"extract_code expects the completion text (str), got {type(text).__name__}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    py_blocks = [b for b in _blocks(text) if b.tag in _PY_TAGS]
    if py_blocks:
        last = py_blocks[-1]
        closed = [b for b in py_blocks if b.closed]
        if last.closed:
            if not last.text.strip():
                return Extraction(None, "no_code", "the last python code block is empty")
            return Extraction(last.text, "ok", f"last closed ```{last.tag or ''} block of {len(py_blocks)}")
        if last.text.strip() and parses(last.text):
            return Extraction(last.text, "ok", "final code block is unclosed (truncated?) but parses")
        if closed:
            b = closed[-1]
            return Extraction(b.text, "ok", "final code block is unclosed and does not parse; "
                                            "used the last closed python block")
        return Extraction(None, "no_code", "the only python code block is unclosed and does not parse "
                                           "(truncated completion)")
    stripped = text.strip("\n")
    if stripped.strip() and _looks_like_program(stripped):
        return Extraction(stripped + "\n", "ok", "no code fence; the whole text parses as python")
    if any(True for _ in _blocks(text)):
        return Extraction(None, "no_code", "only non-python code blocks found")
    return Extraction(None, "no_code", "no code block and the text does not parse as python")
