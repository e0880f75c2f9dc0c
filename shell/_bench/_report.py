"""The figures a bench run measures, their targets, and how they are shown.

Every figure is measured on pymesh and, when Erlang/Elixir are installed, on
the BEAM in the same run. A figure's *ratio* is pymesh ÷ BEAM of the medians;
for a rate higher is better, for a latency lower is better, and a target says
which way it reads (``≥ 1.5×`` for a rate, ``≤ 0.5×`` for a latency).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Figure", "FIGURES", "Results", "table", "markdown", "plot"]

#: figure key -> side ("pymesh" | "beam") -> one sample per round
Results = dict[str, dict[str, list[float]]]


@dataclass(frozen=True)
class Figure:
    key: str
    workload: str
    label: str
    unit: str
    higher_is_better: bool
    ratio_target: float | None = None  # pymesh/BEAM must be >= (rates) or <= (latencies) this
    absolute_target: float | None = None  # pymesh's own median must be <= (latency) / >= (rate) this
    note: str = ""

    def fmt(self, value: float) -> str:
        if self.unit in ("msgs/s", "ops/s", "procs/s", "bytes", "count"):
            return f"{value:,.0f}"
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"


FIGURES: list[Figure] = [
    Figure("throughput_small", "throughput", "send, small map", "msgs/s", True, 1.5),
    Figure("throughput_1k", "throughput", "send, 1 KiB binary", "msgs/s", True, 1.5),
    Figure("throughput_64k", "throughput", "send, 64 KiB binary", "msgs/s", True, 1.5),
    Figure("rtt_p50", "rtt", "ping-pong RTT p50", "µs", False, 1.0),
    Figure("rtt_p99", "rtt", "ping-pong RTT p99", "µs", False, 1.0),
    Figure("call_p50", "call", "GenServer call across nodes p50", "µs", False),
    Figure("call_p99", "call", "GenServer call across nodes p99", "µs", False),
    Figure("registry_register", "registry", "Registry register (local)", "ops/s", True, 1.0),
    Figure("registry_lookup", "registry", "Registry lookup (local)", "ops/s", True, 1.5),
    Figure("global_register", "global", "Global register, 3 nodes", "µs", False, 0.5,
           note="spawn + register_name, mean; `:global` on 3 BEAM nodes"),
    Figure("pg_join_p50", "pg", "pg join visible on node B p50", "µs", False),
    Figure("pg_join_p99", "pg", "pg join visible on node B p99", "µs", False),
    Figure("dreg_p50", "dist_registry", "registry convergence, 8 nodes p50", "ms", False,
           note="pymesh DistributedRegistry vs `:global` (the BEAM has no built-in equivalent)"),
    Figure("dreg_p99", "dist_registry", "registry convergence, 8 nodes p99", "ms", False),
    Figure("formation_16", "formation", "cluster formation, 16 nodes", "ms", False),
    Figure("formation_32", "formation", "cluster formation, 32 nodes", "ms", False),
    Figure("nodedown", "nodedown", "silent-node detection, tick 1 s", "ms", False, absolute_target=2000.0,
           note="SIGSTOP under a 50k msgs/s flow"),
    Figure("false_nodedowns", "nodedown", "false nodedowns under 50k msgs/s", "count", False, absolute_target=0.0),
    Figure("spawn_rate", "spawn", "spawn", "procs/s", True),
    Figure("spawn_memory", "spawn", "memory per idle process", "bytes", False),
]
BY_KEY = {f.key: f for f in FIGURES}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(fig: Figure, res: Results) -> float | None:
    sides = res.get(fig.key, {})
    p, b = _median(sides.get("pymesh", [])), _median(sides.get("beam", []))
    if p is None or b is None or b == 0:
        return None
    return p / b


def verdict(fig: Figure, res: Results) -> str:
    """``met``, ``MISSED`` or ``""`` (no target, or nothing to judge)."""
    sides = res.get(fig.key, {})
    checks = []
    r = ratio(fig, res)
    if fig.ratio_target is not None and r is not None:
        checks.append(r >= fig.ratio_target if fig.higher_is_better else r <= fig.ratio_target)
    if fig.absolute_target is not None and sides.get("pymesh"):
        values = sides["pymesh"]
        if fig.key == "false_nodedowns":
            checks.append(max(values) <= fig.absolute_target)
        else:
            med = statistics.median(values)
            checks.append(med >= fig.absolute_target if fig.higher_is_better else med <= fig.absolute_target)
    if not checks:
        return ""
    return "met" if all(checks) else "MISSED"


def target_text(fig: Figure) -> str:
    parts = []
    if fig.ratio_target is not None:
        parts.append(f"{'≥' if fig.higher_is_better else '≤'} {fig.ratio_target:g}×")
    if fig.absolute_target is not None:
        unit = "" if fig.unit == "count" else f" {fig.unit}"
        parts.append(f"{'≥' if fig.higher_is_better else '≤'} {fig.absolute_target:g}{unit}")
    return ", ".join(parts)


def _cell(fig: Figure, values: list[float] | None) -> tuple[str, str]:
    if not values:
        return "—", ""
    med = statistics.median(values)
    return fig.fmt(med), f"{fig.fmt(min(values))}–{fig.fmt(max(values))}"


def rows(res: Results) -> list[list[str]]:
    out = []
    for fig in FIGURES:
        sides = res.get(fig.key)
        if not sides:
            continue
        pm, pr = _cell(fig, sides.get("pymesh"))
        bm, br = _cell(fig, sides.get("beam"))
        r = ratio(fig, res)
        out.append([
            f"{fig.label} ({fig.unit})", pm, pr, bm, br,
            "" if r is None else f"{r:.2f}×", target_text(fig), verdict(fig, res),
        ])
    return out


HEADER = ["figure", "pymesh", "min–max", "BEAM", "min–max", "ratio", "target", ""]


def table(res: Results) -> str:
    """A plain-text table for the terminal."""
    body = rows(res)
    widths = [max(len(r[i]) for r in [HEADER, *body]) for i in range(len(HEADER))]
    lines = []
    for r in [HEADER, *body]:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown(res: Results, meta: dict[str, Any]) -> str:
    """The Markdown table for the README, with how it was measured."""
    body = rows(res)
    lines = [
        f"`pymesh bench` — {meta['when']}, {meta['machine']}, load before the run {meta['load']};"
        f" pymesh on {meta['loop']}, {meta['beam']}. Median of {meta['rounds']} rounds (min–max beside it);"
        " ratio = pymesh ÷ BEAM of the medians.",
        "",
        "| " + " | ".join(HEADER[:-1] + ["met?"]) + " |",
        "|---|" + "---:|" * 6 + "---|",
    ]
    for r in body:
        lines.append("| " + " | ".join(r) + " |")
    notes = [f"- {fig.label}: {fig.note}" for fig in FIGURES if fig.note and fig.key in res]
    if notes:
        lines += ["", *notes]
    if meta.get("loads"):
        lines += ["", "Machine load (1, 5, 15 min) as each workload started: "
                  + "; ".join(f"{k} {v.removeprefix('load ')}" for k, v in meta["loads"].items()) + "."]
    if meta.get("misses"):
        lines += ["", "Misses and errors during the run:", *[f"- {m}" for m in meta["misses"]]]
    return "\n".join(lines) + "\n"


def plot(res: Results, path: Path, title: str) -> bool:
    """Draw pymesh relative to the BEAM (higher is better) to ``path``; False
    when matplotlib is missing (``pip install pymesh[bench]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figs = [f for f in FIGURES if ratio(f, res) is not None]
    if not figs:
        return False
    better: Callable[[Figure], float] = lambda f: (ratio(f, res) or 1.0) ** (1 if f.higher_is_better else -1)
    values = [better(f) for f in figs]
    labels = [f.label for f in figs]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(figs) + 1.4))
    colors = ["#3b7dd8" if v >= 1 else "#d8843b" for v in values]
    ys = list(range(len(figs)))[::-1]
    ax.barh(ys, values, color=colors, height=0.6)
    for y, f in zip(ys, figs):
        if f.ratio_target is not None:
            t = f.ratio_target ** (1 if f.higher_is_better else -1)
            ax.plot([t, t], [y - 0.38, y + 0.38], color="black", linewidth=2)
    for y, v in zip(ys, values):
        ax.text(v, y, f" {v:.2f}×", va="center", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xscale("log")
    lo, hi = min(values + [0.5]) / 1.3, max(values + [2.0]) * 1.3
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20) if lo <= t <= hi]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}×" for t in ticks])
    ax.minorticks_off()
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("pymesh relative to Erlang/OTP (× faster; > 1 is better; black tick = target)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
