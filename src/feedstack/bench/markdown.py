"""Render ``docs/benchmarks.md`` from measurement records: numbers, machine, command."""

from __future__ import annotations

from typing import Any


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(_flatten(v, key + "."))
        else:
            rows.append((key, v))
    return rows


def render(
    records: list[dict[str, Any]],
    targets: dict[str, list[str]],
    notes: dict[str, list[str]] | None = None,
) -> str:
    """One section per record; ``targets`` maps a record kind to the issue's numbers to reach."""
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`feedstack bench all --out docs/benchmarks.md`). Benchmarks are",
        "not tests: they measure. Each compares against a baseline measured in the same run",
        "(ratios are what carries over between machines; absolute numbers move with the machine,",
        "which is shared and noisy).",
        "",
    ]
    if records:
        m = records[0]["machine"]
        out += [
            "## Machine",
            "",
            f"- {m['cores']} cores, {m['memory_gb']} GB, {m['cpu']}",
            f"- Python {m['python']} on {m['platform']}",
            "- " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
            "",
        ]
    for rec in records:
        kind = rec["kind"]
        out += [f"## {kind}", "", f"Command: `{rec['command']}` at {rec['measured_at']}", ""]
        for line in targets.get(kind, []):
            out.append(f"- target: {line}")
        for line in (notes or {}).get(kind, []):
            out.append(f"- note: {line}")
        if targets.get(kind) or (notes or {}).get(kind):
            out.append("")
        out += ["| measure | value |", "|---|---|"]
        for key, value in _flatten(rec["result"]):
            shown = (
                f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
            )
            out.append(f"| {key} | {shown} |")
        out.append("")
    return "\n".join(out)
