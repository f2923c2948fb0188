"""Benchmarks of selfimprove against the tools a user would pick instead (see README.md here).

Not part of the installed package: run from the repository root with ``make bench`` (the full
protocol of ``../shared/BENCHMARKS.md``) or ``make bench-quick`` (a reduced run, labelled quick).
"""
