"""Benchmarks: measure, compare against a baseline in the same run, record the result.

Benchmarks are not tests: they assert nothing. Each returns a JSON-able dict; the CLI writes it to
the project's ``measurements/`` folder (with command, time, machine and versions) and ``feedstack
bench all`` renders ``docs/benchmarks.md``.
"""
