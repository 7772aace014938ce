"""report.md and report.html from the sections (the same content; the HTML embeds the PNGs)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feedstack.report.section import Section

LABEL_NOTE = (
    "Every number is labeled: **measured** (the record in `measurements/`, its command and time), "
    "**derived** (its formula) or **assumed** (the spec key or price-table entry)."
)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _cell(value: Any) -> str:
    return _fmt(value).replace("|", "\\|").replace("\n", " ")


def markdown(title: str, sections: Sequence[Section], generated: str) -> str:
    out = [f"# {title}", "", f"Generated {generated} by `feedstack report`. {LABEL_NOTE}", ""]
    for i, s in enumerate(sections, 1):
        out += [f"## {i}. {s.title}", ""]
        out += [f"- {line}" for line in s.findings]
        out += [f"- _{line}_" for line in s.missing]
        if s.findings or s.missing:
            out.append("")
        if s.numbers:
            out += ["| quantity | value | unit | label | source |", "|---|---|---|---|---|"]
            for name, q in s.numbers.items():
                out.append(
                    f"| {name} | {_cell(q['value'])} | {_cell(q['unit'])} | {q['label']} "
                    f"| {_cell(q['source'])} |"
                )
            out.append("")
        for t in s.tables:
            out += [f"**{t.title}**" + (f" ({t.source})" if t.source else ""), ""]
            out += ["| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
            out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in t.rows]
            out.append("")
        for name, caption in s.plots:
            out += [f"![{caption}]({name})", ""]
    return "\n".join(out)


def _h(value: Any) -> str:
    return html.escape(_fmt(value))


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_h(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:2px 6px;
font-size:.85rem;text-align:left}.measured{color:#075}.derived{color:#04a}.assumed{color:#a50}
.missing{color:#a00;font-style:italic}img{max-width:100%}"""


def html_page(title: str, sections: Sequence[Section], generated: str, folder: Path) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>Generated {html.escape(generated)} by "
        "<code>feedstack report</code>. Every number is labeled <span class='measured'>measured"
        "</span>, <span class='derived'>derived</span> or <span class='assumed'>assumed</span>, "
        "with its source.</p>",
    ]
    for i, s in enumerate(sections, 1):
        parts.append(f"<h2 id='{s.key}'>{i}. {html.escape(s.title)}</h2><ul>")
        parts += [f"<li>{html.escape(line)}</li>" for line in s.findings]
        parts += [f"<li class='missing'>{html.escape(line)}</li>" for line in s.missing]
        parts.append("</ul>")
        if s.numbers:
            rows = "".join(
                f"<tr><td>{html.escape(n)}</td><td>{_h(q['value'])}</td><td>{_h(q['unit'])}</td>"
                f"<td class='{q['label']}'>{q['label']}</td><td>{_h(q['source'])}</td></tr>"
                for n, q in s.numbers.items()
            )
            parts.append(
                "<table><thead><tr><th>quantity</th><th>value</th><th>unit</th><th>label</th>"
                f"<th>source</th></tr></thead><tbody>{rows}</tbody></table>"
            )
        for t in s.tables:
            src = f" ({html.escape(t.source)})" if t.source else ""
            parts.append(f"<h3>{html.escape(t.title)}{src}</h3>{_table(t.columns, t.rows)}")
        for name, caption in s.plots:
            data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
            parts.append(
                f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)
