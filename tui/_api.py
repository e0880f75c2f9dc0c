"""The runtime calls the pane uses, from the public ``pymesh`` namespace.

The tracing calls are new in :mod:`pymesh.runtime._trace`; until ``pymesh``
re-exports them, they come from there (the one place the pane reaches past the
public face).
"""

from __future__ import annotations

try:
    from pymesh import (  # type: ignore[attr-defined,unused-ignore]
        TraceBatch,
        TraceEvent,
        TrafficWatch,
        measure_rtt,
        short_repr,
        watch_traffic,
    )
except ImportError:  # TODO(lead): drop once pymesh/__init__.py exports the tracing API
    from pymesh.runtime._trace import (
        TraceBatch,
        TraceEvent,
        TrafficWatch,
        measure_rtt,
        short_repr,
        watch_traffic,
    )

__all__ = ["TraceBatch", "TraceEvent", "TrafficWatch", "measure_rtt", "short_repr", "watch_traffic"]
