"""Pictures of each pane over a real 3-node cluster with traffic.

    python -m pymesh.tui.screenshots [--out screenshots] [--size 140x40]

Starts a private port mapper and three nodes (``a``, ``b``, ``c``) as OS
processes, runs a chatter workload on each (messages, links, monitors, exits
crossing every connection) and names of several kinds, attaches the pane as a
hidden node to ``a``, and saves one SVG per pane, then the traffic filtered to
one node, the inspector, and the peers after ``c`` left — and a PNG beside each
when ``cairosvg`` is installed. Everything started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import pymesh
from pymesh import Node

from ._devcluster import DevCluster, short_host
from ._source import RemoteSource

PANES = [("peers", "1"), ("names", "2"), ("traffic", "3"), ("processes", "4")]


def _png(svg: Path) -> Path | None:
    try:
        import cairosvg
    except ImportError:
        return None
    png = svg.with_suffix(".png")
    # Textual's SVG asks for Fira Code from the web; render with a local monospace font
    text = svg.read_text().replace('"Fira Code"', '"DejaVu Sans Mono"').replace(
        "Fira Code, monospace", '"DejaVu Sans Mono", monospace')
    cairosvg.svg2png(bytestring=text.encode(), write_to=str(png), output_width=1800)
    return png


def _save(app: Any, out: Path, name: str) -> Path:
    svg = out / f"{name}.svg"
    app.save_screenshot(filename=svg.name, path=str(out))
    return svg


async def _shoot(cluster: DevCluster, out: Path, size: tuple[int, int]) -> list[Path]:
    from .app import ObserverApp

    nodes = [cluster.node(n) for n in ("a", "b", "c")]
    await pymesh.start(f"shots@{short_host()}", cookie=cluster.cookie, hidden=True,
                       epmd_port=cluster.epmd_port, connect_all=False)
    try:
        for node in nodes:
            await Node.connect(node)
            peers = [n for n in nodes if n != node]
            await Node.spawn(node, "pymesh.tui._demo:chatter", "worker", peers, 40.0)
            short = node.partition("@")[0]
            await Node.spawn(node, "pymesh.tui._demo:register_idle", [f"cache_{short}", f"sessions_{short}"])
            await pymesh.rpc_call(node, "pymesh.tui._demo:service_names", short)
        # let counters, round trips and sparklines fill
        source = RemoteSource(nodes[0])
        app = ObserverApp(source, interval=0.5)
        written: list[Path] = []
        async with app.run_test(size=size) as pilot:
            await asyncio.sleep(6.0)
            for pane, key in PANES:
                await pilot.press(key)
                await asyncio.sleep(1.2)
                await pilot.pause()
                written.append(_save(app, out, pane))
            # the inspector, on the first registered process
            await pilot.press("4")
            await pilot.press("enter")
            await asyncio.sleep(1.0)
            await pilot.pause()
            written.append(_save(app, out, "inspect"))
            await pilot.press("escape")
            # the traffic of one node only, filtered
            await pilot.press("3", "slash", *nodes[2].partition("@")[0] + "@")
            await asyncio.sleep(1.2)
            written.append(_save(app, out, "traffic-filtered"))
            # node c leaves (SIGTERM: a graceful goodbye): a sees nodedown "disconnect"
            await pilot.press("escape", "1")
            await asyncio.get_running_loop().run_in_executor(None, cluster.stop, "c")
            await asyncio.sleep(2.0)
            written.append(_save(app, out, "peers-node-down"))
        return written
    finally:
        await pymesh.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pymesh.tui.screenshots", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="screenshots", help="folder for the pictures (default: screenshots)")
    parser.add_argument("--size", default="140x40", help="terminal COLUMNSxROWS (default 140x40)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cols, rows = (int(v) for v in args.size.split("x"))
    with DevCluster(tick_time=5) as cluster:
        cluster.start("a")
        cluster.start("b", connect="a")
        cluster.start("c", connect="a")
        svgs = pymesh.run(_shoot(cluster, out, (cols, rows)))
    for svg in svgs:
        png = _png(svg)
        print(f"{svg}" + (f" and {png.name}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
