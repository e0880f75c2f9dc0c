"""The runtime calls the pane uses beyond the top-level ``pymesh`` namespace."""

from __future__ import annotations

from pymesh.trace import TraceBatch, TraceEvent, TrafficWatch, measure_rtt, short_repr, watch_traffic

__all__ = ["TraceBatch", "TraceEvent", "TrafficWatch", "measure_rtt", "short_repr", "watch_traffic"]
