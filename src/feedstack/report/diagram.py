"""The design on one diagram: an SVG drawn from the boxes below, annotated with the answers.

Three paths, left to right: events in (ingest, event log, stream worker, online store), the batch
path (train, model selection, candidate cache, registry) and the request path (candidates, user
and item features, rank, filter, log the impression), with monitoring and the rollout/A-B loop
under them. Each box may carry one measured number (``notes``: box key -> short text), so the
reader sees where the p95, the lag and the cost come from.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path

# key: (x, y, width, label); height is fixed. Coordinates in px of a 960 x 380 canvas, laid out
# so that no arrow crosses a box.
BOXES: dict[str, tuple[int, int, int, str]] = {
    "clients": (20, 20, 150, "clients: feeds, events"),
    "serve": (400, 20, 360, "feedstack serve: candidates > features > rank > filter"),
    "abtest": (790, 20, 150, "canary, A/B (hash)"),
    "ingest": (20, 110, 150, "ingest: validate, dead-letter"),
    "impression": (200, 110, 170, "impression + arm logged"),
    "log": (20, 200, 150, "event log (Redis/Kafka)"),
    "worker": (200, 200, 170, "stream worker: features"),
    "online": (400, 200, 170, "online store (Feast, Redis)"),
    "candidates": (600, 200, 160, "candidate cache (batch)"),
    "monitor": (790, 200, 150, "monitor: SLO, drift"),
    "offline": (20, 290, 150, "offline store (Parquet)"),
    "train": (400, 290, 170, "train + model selection"),
    "registry": (600, 290, 160, "registry: champion"),
    "plan": (790, 290, 150, "plan: cost, cores"),
}
ARROWS: tuple[tuple[str, str], ...] = (
    ("clients", "ingest"),
    ("clients", "serve"),
    ("ingest", "log"),
    ("log", "worker"),
    ("worker", "online"),
    ("log", "offline"),
    ("offline", "train"),
    ("train", "candidates"),
    ("train", "registry"),
    ("candidates", "serve"),
    ("online", "serve"),
    ("serve", "impression"),
    ("impression", "log"),
    ("registry", "abtest"),
    ("abtest", "serve"),
    ("serve", "monitor"),
    ("monitor", "plan"),
)
HEIGHT = 46
WIDTH, CANVAS_H = 960, 380


def _center(key: str) -> tuple[float, float]:
    x, y, w, _ = BOXES[key]
    return x + w / 2, y + HEIGHT / 2


def _edge(a: str, b: str) -> tuple[float, float, float, float]:
    """From the border of box ``a`` towards the border of box ``b`` (clipped rectangles)."""
    (ax, ay), (bx, by) = _center(a), _center(b)

    def clip(cx: float, cy: float, dx: float, dy: float, w: float) -> tuple[float, float]:
        tx = (w / 2) / abs(dx) if dx else float("inf")
        ty = (HEIGHT / 2) / abs(dy) if dy else float("inf")
        t = min(tx, ty)
        return cx + dx * t, cy + dy * t

    dx, dy = bx - ax, by - ay
    x1, y1 = clip(ax, ay, dx, dy, BOXES[a][2])
    x2, y2 = clip(bx, by, -dx, -dy, BOXES[b][2])
    return x1, y1, x2, y2


def design_svg(notes: Mapping[str, str] | None = None) -> str:
    notes = notes or {}
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{CANVAS_H}' "
        f"viewBox='0 0 {WIDTH} {CANVAS_H}' font-family='sans-serif' font-size='12'>",
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' "
        "fill='#555'/></marker></defs>",
        f"<rect width='{WIDTH}' height='{CANVAS_H}' fill='white'/>",
    ]
    for a, b in ARROWS:
        x1, y1, x2, y2 = _edge(a, b)
        parts.append(
            f"<line x1='{x1:.0f}' y1='{y1:.0f}' x2='{x2:.0f}' y2='{y2:.0f}' stroke='#555' "
            "stroke-width='1.3' marker-end='url(#arrow)'/>"
        )
    for key, (x, y, w, label) in BOXES.items():
        fill = "#eef4fb" if key in ("serve", "impression", "abtest") else "#f6f6f2"
        parts.append(
            f"<rect x='{x}' y='{y}' width='{w}' height='{HEIGHT}' rx='6' fill='{fill}' "
            "stroke='#446'/>"
        )
        parts.append(
            f"<text x='{x + w / 2:.0f}' y='{y + 18}' text-anchor='middle'>{html.escape(label)}"
            "</text>"
        )
        if key in notes:
            parts.append(
                f"<text x='{x + w / 2:.0f}' y='{y + 35}' text-anchor='middle' fill='#075' "
                f"font-weight='bold'>{html.escape(notes[key])}</text>"
            )
    parts.append(
        f"<text x='20' y='{CANVAS_H - 12}' fill='#555'>green: measured in this run "
        "(details in the sections below)</text></svg>"
    )
    return "\n".join(parts)


def write_design(
    out: Path, notes: Mapping[str, str] | None = None, name: str = "design.svg"
) -> str:
    (out / name).write_text(design_svg(notes), encoding="utf-8")
    return name
