"""tuner's benchmarks (ratios measured side by side) and diagnostics (where the time goes).

Run each from the repository root as a module: `python -m benchmarks.bench_quality --json`.
README.md in this folder says what each measures and how long it takes.
"""
