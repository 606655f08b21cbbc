"""HTML building blocks: escaping, tables, figure divs and the self-contained page.

Every value that comes from data goes through `esc`. Figures are written with
``include_plotlyjs=False``; `page` embeds plotly.js once, in the head, so the file
opens offline from a file:// URL.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from html import escape

import plotly.io as pio
from plotly.graph_objects import Figure
from plotly.offline import get_plotlyjs

from nightly_pipeline.report.text import format_cell

FIGURE_CONFIG = {"displaylogo": False, "responsive": True}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1, h2, h3 { margin-bottom: .4rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.regression td, tr.failed td, tr.error td { background: #fde2e1; }
tr.improvement td, tr.passed td.status { background: #e3f5e1; }
tr.insufficient-data td { color: #777; }
.summary span { margin-right: 1.2rem; }
.bad { color: #b3261e; font-weight: 600; }
.good { color: #1e7b34; font-weight: 600; }
.detail { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .85rem; }
.figure { margin: .5rem 0 1.5rem; }
nav a { margin-right: .8rem; }
"""


def esc(value: object) -> str:
    """A cell's text, formatted like the terminal tables and HTML-escaped."""
    return escape(format_cell(value), quote=True)


def css_class(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def anchor(*parts: str) -> str:
    """A stable id attribute for data-derived names (only [A-Za-z0-9_-])."""
    raw = "-".join(parts)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", raw).strip("-") or "x"
    return f"{slug}-{zlib.crc32(raw.encode()):08x}" if slug != raw else slug


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    row_classes: Sequence[str] | None = None,
    numeric: Sequence[int] = (),
) -> str:
    """A table from already-escaped cell HTML; ``numeric`` column indexes align right."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(
            f'<td class="num">{c}</td>' if j in numeric else f"<td>{c}</td>"
            for j, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure_div(fig: Figure) -> str:
    """One figure as a div plus its newPlot script; plotly.js is not included."""
    html = pio.to_html(
        fig, full_html=False, include_plotlyjs=False, config=FIGURE_CONFIG, validate=False
    )
    return f'<div class="figure">{html}</div>'


def page(title: str, body: str, *, plotly: bool) -> str:
    """A complete HTML document; with ``plotly`` the library is embedded once in the head."""
    script = f'<script type="text/javascript">{get_plotlyjs()}</script>' if plotly else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style>{script}</head>"
        f"<body>{body}</body></html>\n"
    )
