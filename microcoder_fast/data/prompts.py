"""LiveCodeBench-style prompts with an explicit answer-format instruction.

The user message has three parts: ``### Question`` (the statement), ``### Format`` (either "complete the
starter code" with the starter code in a python fence, or "read stdin, write stdout" with an empty python
fence) and ``### Answer``. With a tokenizer that has a chat template, the system and user messages are
rendered through it with the generation prompt appended; otherwise the plain user text is returned.

Imports only ``data.problem``; never torch, the executor, ``ops`` or ``rl``.
"""

from __future__ import annotations

from typing import Any

from microcoder_fast.data.problem import CodeProblem

SYSTEM_PROMPT = (
    "You are an expert competitive programmer. You read a problem statement carefully and answer with a "
    "correct and efficient Python 3 program."
)

CALL_FORMAT = (
    "Complete the starter code below. Keep its class, function names and signatures unchanged, because the "
    "tests call `{fn_name}` directly with the arguments and compare what it returns. Give your complete "
    "solution in a single ```python code block."
)

STDIN_FORMAT = (
    "Write a complete Python program: read the input from standard input, solve the problem, and print "
    "the answer to standard output exactly in the required format. Do not hard-code the examples and do "
    "not print anything else. Give your complete program in a single ```python code block."
)


def user_prompt(problem: CodeProblem) -> str:
    """The user message text for ``problem`` (no chat formatting)."""
    parts = [f"### Question:\n{problem.question.strip()}\n"]
    if problem.fn_name is not None or problem.starter_code.strip():
        fn = problem.fn_name or "the function in the starter code"
        parts.append(f"### Format: {CALL_FORMAT.format(fn_name=fn)}\n")
        parts.append(f"```python\n{problem.starter_code.rstrip()}\n```\n")
    else:
        parts.append(f"### Format: {STDIN_FORMAT}\n")
        parts.append("```python\n# YOUR CODE HERE\n```\n")
    parts.append("### Answer: (your code in one ```python block)\n")
    return "\n".join(parts)


def build_messages(problem: CodeProblem, system: str | None = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """Chat messages: an optional system message and the user prompt."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user_prompt(problem)})
    return messages


def build_prompt(problem: CodeProblem, tokenizer: Any = None, system: str | None = SYSTEM_PROMPT) -> str:  # noqa: ANN401
    """The prompt string for generation.

    With a tokenizer whose ``chat_template`` is set, the messages go through
    ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``; a template that refuses a system
    role gets the system text folded into the user message. Without a tokenizer or template, the system
    text (if any) and the user prompt are joined plainly.
    """
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = build_messages(problem, system)
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # templates that reject the system role raise TemplateError and the like
            if not system:
                raise
            folded = [{"role": "user", "content": f"{system}\n\n{user_prompt(problem)}"}]
            try:
                text = tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=True)
            except Exception:
                raise ValueError(f"the tokenizer's chat template failed to render the prompt: {e}") from e
        if not isinstance(text, str):
            raise ValueError("apply_chat_template did not return a string; is tokenize=False supported?")
        return text
    user = user_prompt(problem)
    return f"{system}\n\n{user}" if system else user
