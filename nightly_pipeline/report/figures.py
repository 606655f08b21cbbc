"""Plotly figures from already-computed frames (see `frames`); no computing here.

Text that comes from data (test and metric names) is HTML-escaped before it reaches
plotly, whose labels understand a few HTML tags; the entities render as plain text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from html import escape as _escape

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nightly_pipeline.report.chaos import FaultWindow
from nightly_pipeline.report.frames import Panel, Trend

FAILED_COLOUR = "#d62728"
CHANGE_COLOUR = "#7f7f7f"
BAND_COLOUR = "rgba(44, 160, 44, 0.15)"


def escape(text: str) -> str:
    """Plotly labels read &lt; &gt; &amp; (not &quot;): quotes stay as they are."""
    return _escape(text, quote=False)


LINE_COLOURS = {"p50": "#2ca02c", "p95": "#ff7f0e", "p99": "#d62728"}
FAULT_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
    "legend": {"orientation": "h", "y": -0.2},
    "hovermode": "x unified",
}


def series_figure(test: str, panels: list[Panel], windows: Sequence[FaultWindow] = ()) -> go.Figure:
    """One test's in-run per-second chart: one row per panel, seconds shared; a chaos
    test's fault windows shaded on every panel, named on the first."""
    titles = [f"{escape(p.title)} ({escape(p.unit)})" for p in panels]
    fig = make_subplots(
        rows=len(panels), cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.08
    )
    for row, panel in enumerate(panels, start=1):
        for (line,), frame in panel.lines.partition_by("line", as_dict=True).items():
            fig.add_trace(
                go.Scatter(
                    x=frame["second"].to_list(),
                    y=frame["value"].to_list(),
                    name=escape(str(line)),
                    mode="lines",
                    line={"color": LINE_COLOURS.get(str(line)), "width": 1.5},
                    legendgroup=str(row),
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(title_text=escape(panel.unit), row=row, col=1, rangemode="tozero")
    _shade(fig, len(panels), windows)
    fig.update_xaxes(title_text="seconds since the load started", row=len(panels), col=1)
    fig.update_layout(
        _LAYOUT,
        title=f"{escape(test)} — in-run series",
        height=170 * len(panels) + 110,
        hovermode="x",
    )
    return fig


def _shade(fig: go.Figure, rows: int, windows: Sequence[FaultWindow]) -> None:
    colours: dict[str, str] = {}
    for window in windows:
        colour = colours.setdefault(window.fault, FAULT_COLOURS[len(colours) % len(FAULT_COLOURS)])
        for row in range(1, rows + 1):
            label: dict[str, object] = {}
            if row == 1:
                label = {
                    "annotation_text": escape(window.label),
                    "annotation_position": "top left",
                    "annotation_font": {"color": colour, "size": 10},
                }
            fig.add_vrect(
                x0=window.start_s, x1=window.end_s, row=row, col=1, fillcolor=colour,
                opacity=0.18, line_width=0, layer="below", **label,
            )  # fmt: skip


def _vline(fig: go.Figure, night: date, *, colour: str, dash: str, text: str) -> None:
    x = night.isoformat()
    fig.add_shape(
        type="line",
        x0=x,
        x1=x,
        xref="x",
        y0=0,
        y1=1,
        yref="paper",
        line={"color": colour, "dash": dash, "width": 1.5},
    )
    fig.add_annotation(
        x=x, y=1, xref="x", yref="paper", text=text, showarrow=False, yanchor="bottom",
        font={"color": colour, "size": 10},
    )  # fmt: skip


def _band(fig: go.Figure, trend: Trend, nights: list[str]) -> None:
    if trend.band is None or not nights:
        return
    low, mean, high = trend.band
    x = [nights[0], nights[-1]]
    n = f" ({trend.band_nights} nights)" if trend.band_nights else ""
    fig.add_trace(
        go.Scatter(x=x, y=[high, high], mode="lines", line={"width": 0}, hoverinfo="skip",
                   showlegend=False, legendgroup="band")
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(x=x, y=[low, low], mode="lines", line={"width": 0}, fill="tonexty",
                   fillcolor=BAND_COLOUR, name=f"baseline band{n}", legendgroup="band",
                   hoverinfo="skip")
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(x=x, y=[mean, mean], mode="lines", name="baseline mean",
                   line={"color": "#2ca02c", "dash": "dot", "width": 1}, legendgroup="band")
    )  # fmt: skip


def trend_figure(trend: Trend) -> go.Figure:
    """Values by night with the baseline band, change points and failed nights marked."""
    points = trend.points.drop_nulls("value").filter(~trend.points["value"].is_nan())
    nights = [d.isoformat() for d in points["night"]]
    values = points["value"].to_list()
    fig = go.Figure()
    _band(fig, trend, nights)
    fig.add_trace(
        go.Scatter(x=nights, y=values, mode="lines+markers", name="value",
                   line={"color": "#1f77b4"}, marker={"size": 6})
    )  # fmt: skip
    bad = points.filter(points["status"] != "passed")
    if not bad.is_empty():
        fig.add_trace(
            go.Scatter(
                x=[d.isoformat() for d in bad["night"]], y=bad["value"].to_list(),
                mode="markers", name="failed/error night",
                text=[escape(s) for s in bad["status"]], hovertemplate="%{x}: %{y} (%{text})",
                marker={"symbol": "x", "size": 11, "color": FAILED_COLOUR},
            )
        )  # fmt: skip
    for night in trend.change_nights:
        if night != trend.first_bad_night:
            _vline(fig, night, colour=CHANGE_COLOUR, dash="dash", text="change")
    if trend.first_bad_night is not None:
        _vline(fig, trend.first_bad_night, colour=FAILED_COLOUR, dash="solid", text="first bad")
    verdict = f" — {escape(trend.verdict)}" if trend.verdict else ""
    unit = f" ({escape(trend.unit)})" if trend.unit else ""
    fig.update_layout(
        _LAYOUT,
        title={"text": f"{escape(trend.label)}{unit}{verdict}", "font": {"size": 14}},
        height=300,
        xaxis={"type": "date"},
    )
    return fig
