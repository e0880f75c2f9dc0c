"""Tracing, public: watch the messages that cross this node, and time round trips.

:func:`watch_traffic` opens a :class:`TrafficWatch`: while at least one is open,
every control message sent to or received from another node is sampled into a
bounded ring (at most ``budget`` a second; the rest are counted), and
:meth:`TrafficWatch.read` returns the newest as :class:`TraceEvent` records
with how many it left out. With no watch open, tracing costs one ``is not
None`` check per message. :func:`measure_rtt` times a ping to a connected
peer through its connection's queue. :func:`short_repr` renders any value as a
short, printable line. See :mod:`pymesh.runtime._trace` for the details.
"""

from .runtime._trace import TraceBatch, TraceEvent, TrafficWatch, measure_rtt, short_repr, watch_traffic

__all__ = ["watch_traffic", "TrafficWatch", "TraceEvent", "TraceBatch", "measure_rtt", "short_repr"]
