"""Prompts: the explicit format instruction per mode, and rendering through a local chat template."""

from __future__ import annotations

import pytest

from microcoder_fast.data import CodeProblem, build_messages, build_prompt

STDIN = CodeProblem(id="s", question="Read two integers and print their sum.", public_tests=[("1 2\n", "3\n")])
CALL = CodeProblem(id="c", question="Return the indices of two numbers adding to target.",
                   starter_code="class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
                   fn_name="twoSum", public_tests=[("[2,7]\n9", "[0, 1]")])


def test_stdin_prompt_asks_for_a_stdin_program():
    text = build_prompt(STDIN, system=None)
    assert text.startswith("### Question:\nRead two integers and print their sum.")
    assert "standard input" in text and "standard output" in text
    assert "```python\n# YOUR CODE HERE\n```" in text
    assert "starter code" not in text
    assert text.rstrip().endswith("### Answer: (your code in one ```python block)")


def test_call_prompt_shows_the_starter_code_and_names_the_function():
    text = build_prompt(CALL, system=None)
    assert "Complete the starter code" in text and "`twoSum`" in text
    assert "```python\nclass Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n```" in text
    assert "standard input" not in text


def test_plain_prompt_includes_system_text_by_default():
    text = build_prompt(STDIN)
    assert text.startswith("You are an expert") and "### Question:" in text
    msgs = build_messages(STDIN)
    assert [m["role"] for m in msgs] == ["system", "user"] and msgs[1]["content"].startswith("### Question")


def _tokenizer(template):
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from tokenizers import models, pre_tokenizers

    vocab = {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>")
    fast.chat_template = template
    return fast


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_rendered_through_the_chat_template():
    text = build_prompt(CALL, _tokenizer(CHATML))
    assert text.startswith("<|im_start|>system\nYou are an expert")
    assert "<|im_start|>user\n### Question:\nReturn the indices" in text
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_template_that_rejects_system_role_gets_it_folded_into_user():
    strict = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}"
              "{% endif %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    text = build_prompt(STDIN, _tokenizer(strict))
    assert text.startswith("[user]You are an expert") and "### Question:" in text and text.endswith("[assistant]")


def test_tokenizer_without_template_gives_plain_text():
    tok = _tokenizer(None)
    assert build_prompt(STDIN, tok) == build_prompt(STDIN)
