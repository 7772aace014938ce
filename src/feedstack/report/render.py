"""report.md and report.html from the sections (the same content; the HTML embeds the figures).

Each section opens with its decision and the alternatives measured, then its findings, tables and
figures; its numbers follow in a compact table. Provenance is kept per number but not repeated
per row: a measured number carries a footnote to the record that measured it (file, command,
time: one footnote per record, listed under "Sources" at the end), and in the HTML every number
also shows its full source on hover (``title=``). Derived numbers show their formula and assumed
ones their spec key or price entry the same way.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feedstack.report.section import Section

LABEL_NOTE = (
    "Every number is labeled **measured** (a footnote names the record in `measurements/`, its "
    "command and time), **derived** (its formula) or **assumed** (the spec key or price-table "
    "entry)."
)
# Quantity.measured's source: "<record file> (<field>): `<command>` at <time>"
_MEASURED = re.compile(r"^(?P<record>\S+) \((?P<what>.*)\): (?P<how>`.*)$", re.S)


class Footnotes:
    """Numbered sources, one per measurement record, in order of first use."""

    def __init__(self) -> None:
        self.notes: dict[str, int] = {}

    def ref(self, q: dict[str, Any]) -> int | None:
        if q.get("label") != "measured":
            return None
        m = _MEASURED.match(str(q.get("source", "")))
        key = f"{m['record']}: {m['how']}" if m else str(q.get("source"))
        return self.notes.setdefault(key, len(self.notes) + 1)


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
    notes = Footnotes()
    out = [f"# {title}", "", f"Generated {generated} by `feedstack report`. {LABEL_NOTE}", ""]
    for i, s in enumerate(sections, 1):
        out += [f"## {i}. {s.title}", ""]
        if s.decision:
            out += [f"**Decision.** {s.decision}", ""]
        if s.alternatives:
            out += [f"**Alternatives measured.** {s.alternatives}", ""]
        out += [f"- {line}" for line in s.findings]
        out += [f"- _{line}_" for line in s.missing]
        if s.findings or s.missing:
            out.append("")
        for t in s.tables:
            out += [f"**{t.title}**" + (f" ({t.source})" if t.source else ""), ""]
            out += ["| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
            out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in t.rows]
            out.append("")
        for name, caption in s.plots:
            out += [f"![{caption}]({name})", ""]
        if s.numbers:
            out += ["| quantity | value | unit | label | source |", "|---|---|---|---|---|"]
            for name, q in s.numbers.items():
                n = notes.ref(q)
                src = f"[^{n}]" if n is not None else _cell(q["source"])
                out.append(
                    f"| {name} | {_cell(q['value'])} | {_cell(q['unit'])} | {q['label']} | {src} |"
                )
            out.append("")
    if notes.notes:
        out += ["## Sources", ""]
        out += [f"[^{n}]: {text}" for text, n in notes.notes.items()]
        out.append("")
    return "\n".join(out)


def _h(value: Any) -> str:
    return html.escape(_fmt(value))


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_h(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _numbers(s: Section, notes: Footnotes) -> str:
    rows = []
    for name, q in s.numbers.items():
        n = notes.ref(q)
        sup = f"<sup><a href='#src-{n}'>{n}</a></sup>" if n is not None else ""
        tip = html.escape(f"{q['label']}: {q['source']}", quote=True)
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td class='{q['label']}' title=\"{tip}\">"
            f"{_h(q['value'])}{sup}</td><td>{_h(q['unit'])}</td></tr>"
        )
    return (
        f"<details><summary>{len(s.numbers)} numbers (hover a value for its source)</summary>"
        "<table class='numbers'><thead><tr><th>quantity</th><th>value</th><th>unit</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></details>"
    )


def _image(folder: Path, name: str, caption: str) -> str:
    mime = "image/svg+xml" if name.endswith(".svg") else "image/png"
    data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(caption)}' src='data:{mime};base64,{data}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


CSS = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
line-height:1.4}table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;
padding:2px 6px;font-size:.85rem;text-align:left}.measured{color:#075}.derived{color:#04a}
.assumed{color:#a50}td[title]{cursor:help}.missing{color:#a00;font-style:italic}
.decision{background:#f3f6fa;border-left:4px solid #04a;padding:.4rem .8rem}
img{max-width:100%}nav a{margin-right:.8rem}section{margin-bottom:2rem}"""


def html_page(title: str, sections: Sequence[Section], generated: str, folder: Path) -> str:
    notes = Footnotes()
    nav = "".join(f"<a href='#{s.key}'>{html.escape(s.title)}</a>" for s in sections)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>Generated {html.escape(generated)} by "
        "<code>feedstack report</code>. Numbers are <span class='measured'>measured</span>, "
        "<span class='derived'>derived</span> or <span class='assumed'>assumed</span>: hover a "
        "value for its source; a footnote leads to the record that measured it.</p>",
        f"<nav>{nav}<a href='#sources'>Sources</a></nav>",
    ]
    for i, s in enumerate(sections, 1):
        parts.append(f"<section id='{s.key}'><h2>{i}. {html.escape(s.title)}</h2>")
        if s.decision or s.alternatives:
            parts.append("<div class='decision'>")
            if s.decision:
                parts.append(f"<p><b>Decision.</b> {html.escape(s.decision)}</p>")
            if s.alternatives:
                parts.append(f"<p><b>Alternatives measured.</b> {html.escape(s.alternatives)}</p>")
            parts.append("</div>")
        parts.append("<ul>")
        parts += [f"<li>{html.escape(line)}</li>" for line in s.findings]
        parts += [f"<li class='missing'>{html.escape(line)}</li>" for line in s.missing]
        parts.append("</ul>")
        for t in s.tables:
            src = f" <small>({html.escape(t.source)})</small>" if t.source else ""
            parts.append(f"<h3>{html.escape(t.title)}{src}</h3>{_table(t.columns, t.rows)}")
        parts += [_image(folder, name, caption) for name, caption in s.plots]
        if s.numbers:
            parts.append(_numbers(s, notes))
        parts.append("</section>")
    parts.append("<section id='sources'><h2>Sources</h2><ol>")
    parts += [
        f"<li id='src-{n}'>{html.escape(text)}</li>"
        for text, n in sorted(notes.notes.items(), key=lambda kv: kv[1])
    ]
    parts.append("</ol></section></body></html>")
    return "\n".join(parts)
