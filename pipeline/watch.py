"""Watching the cluster while the chain runs: a lost node is reported at once, and a run that makes no
progress for ``stall_s`` after losing one stops with an error naming it instead of waiting forever.

Why a run can wait forever: Ray restarts a model actor whose node died, but the restart needs the
resources (a GPU) of a node that is gone, so it stays pending, and the blocks it held wait for it.
Rows written before the loss are in complete part files; a rerun with the same output directory
does the rest (``pipeline.stages.resume``), with the model actors that the remaining nodes can hold.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

logger = logging.getLogger(__name__)


class NodeLostError(RuntimeError):
    """A node left the cluster and no output arrived for ``stall_s`` seconds after that."""


def alive_nodes() -> dict[str, dict]:
    """Ray's alive nodes by node id: ``{"ip": ..., "resources": {...}}``."""
    import ray

    return {n["NodeID"]: {"ip": n["NodeManagerAddress"], "resources": n.get("Resources", {})}
            for n in ray.nodes() if n["Alive"]}


def describe(node_id: str, node: dict) -> str:
    resources = ", ".join(f"{k}={v:g}" for k, v in sorted(node["resources"].items())
                          if not k.startswith(("node:", "memory", "object_store_memory")))
    return f"node {node_id[:12]} at {node['ip']} ({resources})"


def watched(items: Iterable, stall_s: float, poll_s: float = 2.0,
            nodes: Callable[[], dict[str, dict]] = alive_nodes) -> Iterator:
    """Yield ``items`` (consumed in a background thread) while watching ``nodes()`` every ``poll_s``.

    A node alive at the start and gone later is logged once; when nodes were lost and nothing
    arrived for ``stall_s`` seconds since both the loss and the last item, raise ``NodeLostError``
    naming them. An error raised by ``items`` is raised here.
    """
    known = nodes()
    inbox: queue.Queue = queue.Queue()
    end = object()

    def pump() -> None:
        try:
            for item in items:
                inbox.put((item, None))
            inbox.put((end, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            inbox.put((end, exc))

    threading.Thread(target=pump, name="chain-consumer", daemon=True).start()
    lost: dict[str, dict] = {}
    last = time.monotonic()
    while True:
        try:
            item, error = inbox.get(timeout=poll_s)
        except queue.Empty:
            item = error = None
        if error is not None:
            raise error
        if item is end:
            return
        now = time.monotonic()
        if item is not None:
            last = now
            yield item
            continue
        alive = nodes()
        known.update(alive)
        for node_id in known.keys() - alive.keys() - lost.keys():
            lost[node_id] = known[node_id]
            logger.warning("lost %s; the run goes on while it makes progress", describe(node_id, known[node_id]))
            last = max(last, now)
        if lost and now - last > stall_s:
            names = "; ".join(describe(k, v) for k, v in lost.items())
            raise NodeLostError(
                f"lost {names}, and no prediction was written for {stall_s:.0f} s since: stopping. The rows "
                "written so far are kept; rerun with the same --output to finish the run (on the nodes that "
                "remain, or once the cluster has its nodes back)")
