"""Problem formats (LiveCodeBench, HumanEval, MicroCoder JSONL), prompts, code extraction, embedded data."""
