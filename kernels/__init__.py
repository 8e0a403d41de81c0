"""Pure Triton kernels and their launch helpers (installed as ``microcoder_fast.kernels``).

Imports only torch and triton, so any trainer (TRL, verl, ...) can reuse them directly.
"""
