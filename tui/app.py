"""The live pane: a Textual view of one node's peers, names, traffic and processes.

:class:`ObserverApp` draws what a :class:`~pymesh.tui._source.Source` reports,
polling it every ``interval`` seconds in a worker so the interface never waits
on the network. Four panes, one key each:

* **Peers** (``1``) — every known node: address, state (``connected``,
  ``hidden``, ``connecting``, ``down`` with the reason), since when, round-trip
  time, messages and bytes in/out, and a sparkline of its message rate;
* **Names** (``2``) — registered names of every kind the node has (local,
  registries, global, pg, distributed registry), filtered as you type;
* **Traffic** (``3``) — the newest messages crossing the node, newest first:
  time, direction, peer, kind, from, to, size, preview. ``space`` pauses it;
  the filter matches node, pid, name and kind; under a flood the node samples
  and the pane says how many messages it left out;
* **Processes** (``4``) — pid, name, mailbox length, status; ``enter`` (or
  ``i``) inspects the selected one.

Every action has a key in the footer and an entry in the command palette
(``ctrl+p``). When the observed node goes away the pane stays up, says why, and
picks the node up again when it returns. A terminal smaller than
:data:`MIN_SIZE` shows a message instead of a squeezed layout.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.geometry import Size
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Static,
    TabbedContent,
    TabPane,
)

from ._model import PeerInfo, Snapshot, TraceEvent
from ._source import Source

__all__ = ["ObserverApp", "MIN_SIZE", "fmt_bytes", "fmt_duration", "sparkline"]

#: The smallest terminal (columns, rows) the layout is drawn in.
MIN_SIZE = (60, 14)
#: Traffic events the pane keeps, and rows it shows: a screenful (at most
#: SHOW_EVENTS) while live, as they are rebuilt at every poll; the whole
#: history once paused, to scroll back.
KEEP_EVENTS = 2000
SHOW_EVENTS = 100
#: With ``freeze_gc``, every this many polls the collection is a full one.
FULL_GC_EVERY = 120
SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 24

TABS = ("peers", "names", "traffic", "procs")


# --- formatting ---------------------------------------------------------------------------


def fmt_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def fmt_count(n: float) -> str:
    """``12345`` -> ``"12.3k"``."""
    if n < 1000:
        return f"{n:.0f}"
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def fmt_duration(seconds: float | None) -> str:
    """``190`` -> ``"3m10s"``; ``""`` for None."""
    if seconds is None:
        return ""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_clock(t: float) -> str:
    """Local time of day with milliseconds."""
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def sparkline(values: Iterable[float], width: int = 12) -> str:
    """A text sparkline of the last ``width`` values, scaled to their maximum."""
    vals = list(values)[-width:]
    if not vals:
        return ""
    top = max(vals)
    if top <= 0:
        return SPARK[0] * len(vals)
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in vals)


def matches(filter_text: str, *fields: str | None) -> bool:
    """Every word of ``filter_text`` occurs (case-insensitively) in some field."""
    words = filter_text.lower().split()
    if not words:
        return True
    hay = " ".join(f for f in fields if f).lower()
    return all(w in hay for w in words)


STATE_STYLE = {
    "this": "bold cyan",
    "connected": "green",
    "hidden": "blue",
    "connecting": "yellow",
    "down": "bold red",
}


def _freeze_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.disable()  # from now on the pane collects right after each poll (see _poll)


# --- widgets ------------------------------------------------------------------------------


class ProcessScreen(ModalScreen[None]):
    """``process_info`` of one process, as the node reported it."""

    BINDINGS = [Binding("escape,q,i", "dismiss", "Close")]

    def __init__(self, pid: str, detail: dict[str, Any] | None) -> None:
        super().__init__()
        self.pid = pid
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="inspect"):
            yield Static(Text(f"process {self.pid}", style="bold"), id="inspect-title")
            with VerticalScroll():
                yield Static(self._body(), id="inspect-body")
            yield Footer()

    def _body(self) -> Text:
        if self.detail is None:
            return Text("the process is gone (or the node did not answer)", style="italic")
        text = Text()
        for key, value in self.detail.items():
            if key == "started" and isinstance(value, (int, float)):
                value = f"{fmt_clock(value)} ({fmt_duration(time.time() - value)} ago)"
            elif isinstance(value, list):
                value = ", ".join(map(str, value)) or "—"
            text.append(f"{key:>18}  ", style="bold")
            text.append(f"{'—' if value is None else value}\n")
        return text


class ObserverApp(App[None]):
    """The observer pane over one :class:`~pymesh.tui._source.Source`.

    ``interval`` is the seconds between polls (0 polls only at start and on
    ``r``, for tests). ``close_source`` closes the source on exit.
    ``freeze_gc`` (for a process that only runs the pane, as ``pymesh tui``)
    moves everything alive after the first frame out of the cyclic GC's
    reach — Textual's import-time objects are most of the heap — and then
    collects right after each poll is drawn instead of at allocation
    thresholds: a collection (tens of milliseconds here) in the middle of a
    key press is what the user feels as a slow key.
    """

    CSS_PATH = "observer.tcss"
    TITLE = "pymesh observer"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("1", "show_tab('peers')", "Peers"),
        Binding("2", "show_tab('names')", "Names"),
        Binding("3", "show_tab('traffic')", "Traffic"),
        Binding("4", "show_tab('procs')", "Procs"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter"),
        Binding("space", "toggle_pause", "Pause"),
        Binding("c", "clear_traffic", "Clear traffic"),
        Binding("i", "inspect", "Inspect"),
        Binding("r", "refresh_now", "Refresh"),
        Binding("q", "quit", "Quit"),
    ]

    paused: reactive[bool] = reactive(False)
    too_small: reactive[bool] = reactive(False)

    def __init__(self, source: Source, *, interval: float = 0.5, close_source: bool = True,
                 freeze_gc: bool = False) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.close_source = close_source
        self.freeze_gc = freeze_gc
        self.snapshot: Snapshot | None = None
        self.events: deque[TraceEvent] = deque(maxlen=KEEP_EVENTS)
        self.left_out = 0  # messages not shown since the pane opened
        self.paused_count = 0  # messages that arrived while paused
        self.rates: dict[str, deque[float]] = {}
        self.node_rates: dict[str, tuple[float, float]] = {}  # node -> (in/s, out/s)
        self._last: dict[str, tuple[float, int, int]] = {}  # node -> (time, msgs_in, msgs_out)
        self._rows: dict[str, list[tuple[str, tuple[Any, ...]]]] = {}
        self._polling = False
        self._session = ""
        self.polls = 0
        self._traffic_stale = True
        self._size_seen = (0, 0)
        self.sub_title = f"{source.node} ({source.via})"

    # --- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(icon="●")
        with Vertical(id="main"):
            yield Static("connecting…", id="status")
            with TabbedContent(id="tabs", initial="peers"):
                with TabPane("Peers", id="peers"):
                    yield DataTable(id="peers-table", cursor_type="row", zebra_stripes=True)
                with TabPane("Names", id="names"):
                    yield Input(placeholder="filter names: kind, name, pid, node…", id="names-filter")
                    yield DataTable(id="names-table", cursor_type="row", zebra_stripes=True)
                with TabPane("Traffic", id="traffic"):
                    yield Input(placeholder="filter traffic: node, pid, name, kind…", id="traffic-filter")
                    yield Static("", id="traffic-rates")
                    yield DataTable(id="traffic-table", cursor_type="row", zebra_stripes=True)
                with TabPane("Processes", id="procs"):
                    yield Input(placeholder="filter processes: pid, name, status, function…", id="procs-filter")
                    yield DataTable(id="procs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="too-small")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#peers-table", DataTable).add_columns(
            "node", "address", "state", "since", "rtt", "msgs in", "msgs out", "bytes in", "bytes out", "rate"
        )
        self.query_one("#names-table", DataTable).add_columns("kind", "name", "pid", "node")
        self.query_one("#traffic-table", DataTable).add_columns(
            "time", "dir", "peer", "kind", "from", "to", "size", "preview"
        )
        self.query_one("#procs-table", DataTable).add_columns("pid", "name", "mailbox", "status", "function")
        self._check_size()
        self.query_one("#peers-table").focus()
        self.refresh_data()
        if self.interval > 0:
            self.set_interval(self.interval, self.refresh_data)
        if self.freeze_gc and self.interval > 0:
            self.call_after_refresh(_freeze_gc)

    async def on_unmount(self) -> None:
        if self.freeze_gc:
            gc.enable()
        if self.close_source:
            try:
                await self.source.close()
            except Exception:  # closing is best effort: the node may be gone
                pass

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size)

    def _check_size(self, size: Size | None = None) -> None:
        w, h = size or self.size
        self._size_seen = (w, h)
        self.too_small = w < MIN_SIZE[0] or h < MIN_SIZE[1]
        if self.too_small:
            self.watch_too_small(True)  # the numbers in the message changed

    def watch_too_small(self, small: bool) -> None:
        for screen in self.screen_stack:
            screen.set_class(small, "-too-small")
        w, h = self._size_seen
        self.query_one("#too-small", Static).update(
            Text(
                f"The terminal is too small for the observer ({w}×{h}).\n"
                f"It needs at least {MIN_SIZE[0]}×{MIN_SIZE[1]}: enlarge the window, or press q to quit.",
                justify="center",
            )
        )

    # --- polling -------------------------------------------------------------------------

    def refresh_data(self) -> None:
        """Poll the source now unless a poll is still running."""
        if not self._polling:
            self._polling = True
            self._poll()

    @work(exclusive=True, group="poll")
    async def _poll(self) -> None:
        try:
            snap = await self.source.poll()
        except Exception as e:  # a source bug must not take the pane down
            snap = Snapshot(node=self.source.node, time=time.time(), alive=False, reason=f"{type(e).__name__}: {e}")
        finally:
            self._polling = False
        try:
            self.apply(snap)
        except NoMatches:  # the pane is closing: its widgets are gone
            return
        if self.freeze_gc and not gc.isenabled():
            # collect now, just after drawing, rather than whenever an allocation
            # count says so — possibly in the middle of handling a key
            gc.collect(2 if self.polls % FULL_GC_EVERY == 0 else 1)

    def apply(self, snap: Snapshot) -> None:
        """Show ``snap`` (called after every poll)."""
        self.polls += 1
        if not snap.alive:
            self._show_down(snap)
            return
        if snap.session != self._session:
            self._last.clear()  # the node restarted, or a new watch began: counters restart
            self._session = snap.session
        self.snapshot = snap
        self._update_rates(snap)
        if self.paused:
            self.paused_count += len(snap.events) + snap.left_out
        else:
            self.events.extend(snap.events)
            self.left_out += snap.left_out
        self._render_status()
        self._traffic_stale = self._traffic_stale or bool(snap.events or snap.left_out)
        self._render_visible()

    def _render_visible(self) -> None:
        """Redraw the pane on screen; the others wait until they are shown."""
        tab = self.current_tab
        if tab == "peers":
            self._render_peers()
        elif tab == "names":
            self._render_names()
        elif tab == "procs":
            self._render_procs()
        elif tab == "traffic":
            if self._traffic_stale and not self.paused:
                self._render_traffic()
            self._render_rates()

    def _update_rates(self, snap: Snapshot) -> None:
        seen = set()
        for p in snap.peers:
            seen.add(p.node)
            last = self._last.get(p.node)
            self._last[p.node] = (snap.time, p.msgs_in, p.msgs_out)
            hist = self.rates.setdefault(p.node, deque(maxlen=HISTORY))
            if p.state == "this":
                continue
            if last is None or snap.time <= last[0] or p.msgs_in < last[1] or p.msgs_out < last[2]:
                self.node_rates[p.node] = (0.0, 0.0)
                if last is not None:
                    hist.append(0.0)
                continue
            dt = snap.time - last[0]
            rin, rout = (p.msgs_in - last[1]) / dt, (p.msgs_out - last[2]) / dt
            self.node_rates[p.node] = (rin, rout)
            hist.append(rin + rout)
        for node in list(self._last):
            if node not in seen:
                del self._last[node]

    # --- rendering -----------------------------------------------------------------------

    def _show_down(self, snap: Snapshot) -> None:
        status = self.query_one("#status", Static)
        status.update(Text.assemble(
            ("✖ ", "bold red"), (snap.node, "bold"), (" is down", "bold red"),
            f" ({snap.reason or 'unreachable'}) — reconnecting…",
            "" if self.snapshot is None else f"  (showing what it reported at {fmt_clock(self.snapshot.time)})",
        ))
        status.set_class(True, "-down")
        if self.snapshot is not None:
            # the observed node's own row turns down; the rest stays as last seen
            rows = [
                p if p.state != "this" else PeerInfo(p.node, p.address, "down", snap.reason, snap.time, None,
                                                     0, 0, 0, 0, 0)
                for p in self.snapshot.peers
            ]
            self.snapshot = Snapshot(**{**self.snapshot.__dict__, "peers": rows, "events": [], "left_out": 0})
            self._render_peers()
        else:
            self.snapshot = None
            self._sync(
                "peers-table",
                [(snap.node, (snap.node, "", Text(f"down ({snap.reason})", style=STATE_STYLE["down"]),
                              "", "", "", "", "", "", ""))],
            )

    def _render_status(self) -> None:
        snap = self.snapshot
        assert snap is not None
        status = self.query_one("#status", Static)
        status.set_class(False, "-down")
        up = sum(1 for p in snap.peers if p.state in ("connected", "hidden"))
        rin = sum(r[0] for r in self.node_rates.values())
        rout = sum(r[1] for r in self.node_rates.values())
        parts: list[Any] = [
            ("● ", "bold green"), (snap.node, "bold"),
            f"  {up} peer{'s' if up != 1 else ''} up · {snap.names_total} names · {snap.procs_total} processes"
            f" · traffic ↓{fmt_count(rin)}/s ↑{fmt_count(rout)}/s",
        ]
        if self.paused:
            parts.append(("  ⏸ PAUSED", "bold yellow"))
            parts.append(f" ({fmt_count(self.paused_count)} messages since)")
        if snap.errors:
            parts.append(("  ⚠ " + "; ".join(snap.errors), "yellow"))
        status.update(Text.assemble(*parts))

    def _sync(self, table_id: str, rows: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Make the table show ``rows`` (key, cells), touching only what changed."""
        table = self.query_one(f"#{table_id}", DataTable)
        old = self._rows.get(table_id)
        if old is not None and [k for k, _ in old] == [k for k, _ in rows]:
            columns = list(table.columns)
            for (key, cells), (_, before) in zip(rows, old):
                if cells != before:
                    for col, (a, b) in enumerate(zip(cells, before)):
                        if a != b:
                            table.update_cell(key, columns[col], a, update_width=True)
        else:
            cursor_key = None
            if old and 0 <= table.cursor_row < len(old):
                cursor_key = old[table.cursor_row][0]
            table.clear()
            for key, cells in rows:
                table.add_row(*cells, key=key)
            if cursor_key is not None:
                keys = [k for k, _ in rows]
                if cursor_key in keys:
                    table.move_cursor(row=keys.index(cursor_key), animate=False)
        self._rows[table_id] = rows

    def _render_peers(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        rows = []
        for p in snap.peers:
            state = p.state if p.reason is None else f"{p.state} ({p.reason})"
            since = None if p.since is None else snap.time - p.since
            rows.append((p.node, (
                Text(p.node, style="bold" if p.state == "this" else ""),
                p.address or "",
                Text(state, style=STATE_STYLE.get(p.state, "")),
                fmt_duration(since),
                "" if p.rtt is None else f"{p.rtt * 1000:.2f} ms",
                fmt_count(p.msgs_in) if p.state != "this" else "",
                fmt_count(p.msgs_out) if p.state != "this" else "",
                fmt_bytes(p.bytes_in) if p.state != "this" else "",
                fmt_bytes(p.bytes_out) if p.state != "this" else "",
                Text(sparkline(self.rates.get(p.node, ())), style="green"),
            )))
        self._sync("peers-table", rows)

    def _filter(self, tab: str) -> str:
        return self.query_one(f"#{tab}-filter", Input).value

    def _render_names(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        f = self._filter("names")
        rows = [
            (f"{n.kind}\x00{n.name}\x00{n.pid}", (n.kind, Text(n.name), n.pid, n.node))
            for n in snap.names
            if matches(f, n.kind, n.name, n.pid, n.node)
        ]
        self._sync("names-table", rows)
        tab = self.query_one("#tabs", TabbedContent).get_tab("names")
        tab.label = f"Names ({len(rows)})" if f else "Names"

    def _render_procs(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        f = self._filter("procs")
        rows = [
            (p.pid, (p.pid, Text(p.name or ""), str(p.mailbox), p.status, Text(p.call)))
            for p in snap.procs
            if matches(f, p.pid, p.name, p.status, p.call)
        ]
        self._sync("procs-table", rows)

    def _render_traffic(self) -> None:
        self._traffic_stale = False
        f = self._filter("traffic")
        rows: list[tuple[Any, ...]] = []
        table = self.query_one("#traffic-table", DataTable)
        limit = KEEP_EVENTS if self.paused else min(SHOW_EVENTS, max(20, table.size.height))
        for e in reversed(self.events):
            if len(rows) >= limit:
                break
            if not matches(f, e.node, e.kind, e.frm, e.to, e.frm_name, e.to_name):
                continue
            rows.append((
                fmt_clock(e.time),
                Text("→" if e.direction == "out" else "←", style="magenta" if e.direction == "out" else "cyan"),
                e.node,
                e.kind,
                Text(e.frm_name or e.frm),
                Text(e.to_name or e.to),
                ("≥" if e.approx else "") + fmt_bytes(e.size),
                Text(e.preview),
            ))
        table.clear()
        table.add_rows(rows)

    def _render_rates(self) -> None:
        parts: list[Any] = []
        for node, (rin, rout) in sorted(self.node_rates.items()):
            if parts:
                parts.append("  ")
            parts += [(node, "bold"), f" ↓{fmt_count(rin)}/s ↑{fmt_count(rout)}/s"]
        if not parts:
            parts.append(("no peers", "dim"))
        parts.append(f"   · shown {fmt_count(len(self.events))}, left out {fmt_count(self.left_out)}")
        if self.paused:
            parts.append(("  ⏸ PAUSED", "bold yellow"))
        self.query_one("#traffic-rates", Static).update(Text.assemble(*parts))

    # --- events ------------------------------------------------------------------------------

    @on(Input.Changed)
    def _filter_changed(self, event: Input.Changed) -> None:
        tab = (event.input.id or "").removesuffix("-filter")
        if tab == "names":
            self._render_names()
        elif tab == "procs":
            self._render_procs()
        elif tab == "traffic":
            self._render_traffic()

    @on(Input.Submitted)
    def _filter_submitted(self, event: Input.Submitted) -> None:
        tab = (event.input.id or "").removesuffix("-filter")
        self.query_one(f"#{tab}-table", DataTable).focus()

    @on(DataTable.RowSelected, "#procs-table")
    def _proc_selected(self, event: DataTable.RowSelected) -> None:
        self.action_inspect()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id or "peers"
        if self.snapshot is not None:
            self._render_visible()
        self.query_one(f"#{pane}-table", DataTable).focus()

    # --- actions -----------------------------------------------------------------------------

    @property
    def current_tab(self) -> str:
        return self.query_one("#tabs", TabbedContent).active or "peers"

    def action_show_tab(self, tab: str) -> None:
        """Switch to the pane ``tab`` (peers, names, traffic, procs)."""
        if isinstance(self.screen, ModalScreen):
            return
        self.query_one("#tabs", TabbedContent).active = tab
        self.query_one(f"#{tab}-table", DataTable).focus()

    def action_focus_filter(self) -> None:
        """Focus the current pane's filter (the Peers pane has none: go to Names)."""
        tab = self.current_tab
        if tab == "peers":
            self.action_show_tab("names")
            tab = "names"
        self.query_one(f"#{tab}-filter", Input).focus()

    def action_clear_filter(self) -> None:
        """Empty the current pane's filter and go back to its table."""
        tab = self.current_tab
        if tab != "peers":
            self.query_one(f"#{tab}-filter", Input).value = ""
        self.query_one(f"#{tab}-table", DataTable).focus()

    def action_toggle_pause(self) -> None:
        """Pause or resume the traffic tail."""
        self.paused = not self.paused

    def watch_paused(self, paused: bool) -> None:
        if not paused:
            self.left_out += self.paused_count
            self.paused_count = 0
        if self.snapshot is not None:
            self._render_status()
            self._render_rates()
            self._render_traffic()  # paused: the whole history, to scroll back

    def action_clear_traffic(self) -> None:
        """Forget the traffic shown so far."""
        self.events.clear()
        self.left_out = 0
        self._render_traffic()
        self._render_rates()

    def action_refresh_now(self) -> None:
        """Poll the node now."""
        self.refresh_data()

    def action_inspect(self) -> None:
        """Show ``process_info`` of the process selected in the Processes pane."""
        if self.current_tab != "procs":
            self.action_show_tab("procs")
            return
        table = self.query_one("#procs-table", DataTable)
        rows = self._rows.get("procs-table") or []
        if not rows or not 0 <= table.cursor_row < len(rows):
            self.notify("no process selected", severity="warning")
            return
        self._inspect(rows[table.cursor_row][0])

    @work(exclusive=True, group="inspect")
    async def _inspect(self, pid: str) -> None:
        try:
            detail = await self.source.process_detail(pid)
        except Exception:
            detail = None
        await self.push_screen(ProcessScreen(pid, detail))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Show peers", "Every known node, its state, RTT and traffic (1)",
                            lambda: self.action_show_tab("peers"))
        yield SystemCommand("Show names", "Registered names of every kind (2)", lambda: self.action_show_tab("names"))
        yield SystemCommand("Show traffic", "The messages crossing the node (3)",
                            lambda: self.action_show_tab("traffic"))
        yield SystemCommand("Show processes", "Local processes (4)", lambda: self.action_show_tab("procs"))
        yield SystemCommand("Filter", "Filter the current pane (/)", self.action_focus_filter)
        yield SystemCommand("Clear filter", "Empty the current pane's filter (escape)", self.action_clear_filter)
        yield SystemCommand("Pause / resume traffic", "Freeze the traffic tail (space)", self.action_toggle_pause)
        yield SystemCommand("Clear traffic", "Forget the traffic shown so far (c)", self.action_clear_traffic)
        yield SystemCommand("Inspect process", "process_info of the selected process (i / enter)",
                            self.action_inspect)
        yield SystemCommand("Refresh now", "Poll the node now (r)", self.action_refresh_now)
