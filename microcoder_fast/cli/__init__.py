"""Command-line entry points: microcoder-train, microcoder-eval."""
