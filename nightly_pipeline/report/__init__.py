"""Human-facing output: text tables now, plotly HTML reports with the History issue."""
