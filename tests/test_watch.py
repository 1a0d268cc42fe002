"""The run's watch: a lost node with no progress after it stops the run with an error naming the node,
within the stall time; progress after a loss, or no loss, lets the run finish; chain errors pass through."""
from __future__ import annotations

import threading
import time

import pytest

from pipeline.watch import NodeLostError, watched

A = {"ip": "10.0.0.1", "resources": {"CPU": 4.0, "node:10.0.0.1": 1.0}}
B = {"ip": "10.0.0.2", "resources": {"CPU": 2.0, "fake_gpu": 1.0, "memory": 1e9}}


class Cluster:
    def __init__(self):
        self.nodes = {"aaaa" * 8: A, "bbbb" * 8: B}

    def __call__(self):
        return dict(self.nodes)


def test_everything_arrives_when_no_node_is_lost():
    assert list(watched(iter(range(5)), stall_s=0.2, poll_s=0.01, nodes=Cluster())) == list(range(5))


def test_a_stall_after_a_lost_node_raises_naming_it_within_the_stall_time():
    cluster, never = Cluster(), threading.Event()

    def chain():
        yield 1
        del cluster.nodes["bbbb" * 8]
        never.wait()  # the blocks of the lost node never come
        yield 2

    got, start = [], time.monotonic()
    with pytest.raises(NodeLostError, match=r"lost node bbbbbbbbbbbb at 10\.0\.0\.2 \(CPU=2, fake_gpu=1\)") as info:
        for item in watched(chain(), stall_s=0.3, poll_s=0.02, nodes=cluster):
            got.append(item)
    assert got == [1] and 0.3 <= time.monotonic() - start < 3
    assert "rerun with the same --output" in str(info.value)
    never.set()


def test_progress_after_a_loss_lets_the_run_finish():
    cluster = Cluster()

    def chain():
        del cluster.nodes["bbbb" * 8]
        for i in range(6):
            time.sleep(0.1)  # slower than the poll, faster than the stall time
            yield i

    assert list(watched(chain(), stall_s=0.4, poll_s=0.02, nodes=cluster)) == list(range(6))


def test_a_stall_without_a_lost_node_is_not_an_error():
    def chain():
        time.sleep(0.3)
        yield "late"

    assert list(watched(chain(), stall_s=0.05, poll_s=0.01, nodes=Cluster())) == ["late"]


def test_errors_of_the_chain_are_raised():
    def chain():
        yield 1
        raise ValueError("bad block")

    with pytest.raises(ValueError, match="bad block"):
        list(watched(chain(), stall_s=1, poll_s=0.01, nodes=Cluster()))
