"""Preparation and model work overlap: benchmarks are prepared one after another on a driver thread, and
the model chain starts on the ones ready while the rest are still being prepared.

``waves`` yields the names of the benchmarks prepared since the previous wave; the caller runs one chain
per wave, and the model actors start once per wave. A wave closes once no preparation has finished for
``settle_s`` seconds, so quick preparations (small runs, cached datasets) share one wave and one start of
the actors, while a long one lets the model work begin on what is ready. Benchmarks already prepared by
an earlier attempt form the first wave.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

SETTLE_S = 5.0


def waves(jobs: dict[str, Callable[[], dict]], records: dict[str, dict],
          ready: Callable[[str], bool] = lambda name: False, settle_s: float = SETTLE_S) -> Iterator[list[str]]:
    """Run ``jobs[name]()`` in order on a background thread, storing each result in ``records[name]``.

    Yields lists of names whose job has finished, in job order: first those ``ready`` says need no
    work (their jobs run here, at once), then whatever has finished since the last wave (waiting for
    at least one, then for more while each follows the previous within ``settle_s`` seconds). A job's
    error is raised here, after the waves of the jobs before it.
    """
    names = list(jobs)
    first = []
    while names and ready(names[0]):
        records[names[0]] = jobs[names[0]]()
        first.append(names.pop(0))
    if first:
        yield first
    if not names:
        return
    done: queue.Queue = queue.Queue()
    end = object()

    def work() -> None:
        try:
            for name in names:
                records[name] = jobs[name]()
                done.put((name, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            done.put((end, exc))
            return
        done.put((end, None))

    threading.Thread(target=work, name="prepare", daemon=True).start()
    finished = False
    while not finished:
        batch, error = [], None
        item, error = done.get()
        while True:
            if item is end:
                finished = True
                break
            batch.append(item)
            try:
                item, error = done.get(timeout=settle_s)
            except queue.Empty:
                break
        if batch:
            yield batch
        if error is not None:
            raise error
