"""Benchmarks: ``make bench`` (``python -m bench [NAME ...]``) runs them and writes the results to
``bench/results/latest.json`` and a readable ``bench/results/latest.md``.

Each benchmark is a module with ``run() -> list[Result]``; ratios are measured within one run so a
noisy shared machine affects both sides alike.
"""
