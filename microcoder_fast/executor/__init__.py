"""The Python face of the C++ sandboxed executor: Executor, Problem, TestCase, Verdict."""
