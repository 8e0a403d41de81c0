"""Code extraction: last fenced python block, else whole text if it parses, else no_code."""

from __future__ import annotations

import pytest

from microcoder_fast.data import Extraction, extract_code

F = "```"


def test_single_python_block_with_prose():
    ex = extract_code(f"Here is my solution.\n{F}python\nprint(int(input()) * 2)\n{F}\nIt doubles the input.")
    assert ex == Extraction("print(int(input()) * 2)\n", "ok", ex.reason)
    assert ex.ok


@pytest.mark.parametrize("tag", ["python", "py", "Python3", "", "python title=sol.py", "{.python}", "python:sol.py",
                                 " python"])
def test_python_fence_tags(tag):
    ex = extract_code(f"x\n{F}{tag}\nx = 1\n{F}\n")
    assert ex.status == "ok" and ex.code == "x = 1\n"


def test_last_block_wins_over_earlier_ones():
    text = f"First try:\n{F}python\nprint(1)\n{F}\nOops, fixed:\n{F}python\nprint(2)\n{F}\n"
    assert extract_code(text).code == "print(2)\n"


def test_non_python_fences_are_skipped():
    text = f"{F}python\nprint('real')\n{F}\nExample input:\n{F}text\n1 2\n{F}\nand json:\n{F}json\n{{\"a\": 1}}\n{F}\n"
    assert extract_code(text).code == "print('real')\n"


@pytest.mark.parametrize("tag", ["pythonic", "cpp", "c++", "bash", "text", "pycon"])
def test_other_tags_are_not_python(tag):
    assert extract_code(f"{F}{tag}\nx = 1\n{F}\n").status == "no_code"


def test_only_non_python_fences_is_no_code():
    ex = extract_code(f"Try this:\n{F}cpp\nint main() {{ return 0; }}\n{F}\n")
    assert ex.status == "no_code" and ex.code is None
    assert "non-python" in ex.reason


def test_crlf_line_endings():
    ex = extract_code(f"Solution:\r\n{F}python\r\nx = 1\r\nprint(x)\r\n{F}\r\n")
    assert ex.code == "x = 1\nprint(x)\n"
    assert "\r" not in ex.code


def test_unclosed_final_block_that_parses_is_used():
    # e.g. a stop sequence ate the closing fence
    ex = extract_code(f"Answer:\n{F}python\nn = int(input())\nprint(n + 1)\n")
    assert ex.status == "ok" and ex.code == "n = int(input())\nprint(n + 1)\n"
    assert "unclosed" in ex.reason


def test_truncated_unclosed_block_is_no_code():
    ex = extract_code(f"Answer:\n{F}python\ndef solve(n):\n    for i in range(n\n")
    assert ex.status == "no_code" and ex.code is None
    assert "truncated" in ex.reason


def test_truncated_block_after_a_closed_one_falls_back_to_closed():
    text = f"{F}python\nprint('v1')\n{F}\nLet me improve it:\n{F}python\nwhile (True\n"
    ex = extract_code(text)
    assert ex.code == "print('v1')\n" and "unclosed" in ex.reason


def test_closed_block_that_does_not_parse_is_wrong_code_not_no_code():
    ex = extract_code(f"{F}python\ndef f(:\n    pass\n{F}\n")
    assert ex.status == "ok" and ex.code == "def f(:\n    pass\n"


def test_empty_block_is_no_code():
    assert extract_code(f"{F}python\n\n{F}\n").status == "no_code"


def test_whole_text_when_it_parses():
    code = "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n"
    ex = extract_code(code)
    assert ex.status == "ok" and ex.code == code


@pytest.mark.parametrize("text", ["", "   \n", "I don't know how to solve this.", "Hello", "42",
                                  "The answer is to use dynamic programming over the prefix sums."])
def test_prose_is_no_code(text):
    ex = extract_code(text)
    assert ex.status == "no_code" and ex.code is None


def test_indented_fence_in_a_list_is_dedented():
    text = f"1. Code:\n   {F}python\n   def f():\n       return 1\n   {F}\n"
    assert extract_code(text).code == "def f():\n    return 1\n"


def test_longer_fence_can_hold_triple_backticks_inside():
    text = f"````python\ns = '''\n{F}\n'''\nprint(s)\n````\n"
    assert extract_code(text).code == f"s = '''\n{F}\n'''\nprint(s)\n"


def test_tilde_fence():
    assert extract_code("~~~python\nprint(3)\n~~~\n").code == "print(3)\n"


def test_inline_backticks_are_not_fences():
    text = f"Use `print` here: {F}python print(1){F} and then\n{F}python\nprint(2)\n{F}"
    assert extract_code(text).code == "print(2)\n"


def test_type_error():
    with pytest.raises(TypeError, match="completion text"):
        extract_code(None)  # type: ignore[arg-type]


def test_warnings_about_the_parsed_code_stay_quiet_and_do_not_change_the_outcome():
    import warnings

    from microcoder_fast.data.extract import parses, syntax_error

    code = 'import re\nprint(re.findall("\\d+", input()))\n'  # an invalid escape: the parser warns about it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would raise: under -W error this was "does not parse"
        assert parses(code) and syntax_error(code) is None
        assert extract_code(code).code == code
    assert "SyntaxError" in syntax_error("def f(:\n")
