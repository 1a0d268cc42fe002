"""A local multi-node Ray cluster on this machine: a head and worker nodes, each a ``ray start --block``
process in its own session, on private ports and one private temp dir; nodes are killed one by one.
Each node's own output goes to ``<tmp>/node-<i>.log``, whose tail a failed start reports."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from raytools import free_ports, kill_started, ray_env

RAY = str(Path(sys.executable).parent / "ray")
OBJECT_STORE_BYTES = 200 * 2**20


class LocalCluster:
    """``head_cpus`` CPUs on the head; ``add_worker`` joins a node with its CPUs and custom resources."""

    def __init__(self, tmp: str, head_cpus: int = 4):
        self.tmp, self.env = tmp, ray_env(tmp)
        self.workers: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        gcs, client, *ports = free_ports(8)
        self.address = f"127.0.0.1:{gcs}"
        self.head = self._start(["--head", f"--port={gcs}", f"--ray-client-server-port={client}",
                                 "--include-dashboard=false", f"--num-cpus={head_cpus}"], ports)
        self._wait_nodes(1)

    def _start(self, args: list[str], ports: list[int]) -> subprocess.Popen:
        nm, om, metrics, agent_http, agent_grpc, env_agent = ports
        # worker ports 0: each worker binds one the kernel picks. A fixed range could hold a port given to
        # another component (``ray start`` then exits with 1), or one in use by another process.
        cmd = [RAY, "start", "--block", f"--temp-dir={self.tmp}", *args, f"--node-manager-port={nm}",
               f"--object-manager-port={om}", f"--metrics-export-port={metrics}",
               f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
               f"--runtime-env-agent-port={env_agent}", f"--object-store-memory={OBJECT_STORE_BYTES}",
               "--disable-usage-stats", "--min-worker-port=0", "--max-worker-port=0"]
        log = Path(self.tmp) / f"node-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as sink:
            return subprocess.Popen(cmd, env=self.env, start_new_session=True, stdout=sink, stderr=subprocess.STDOUT)

    def add_worker(self, cpus: int, resources: dict[str, float]) -> subprocess.Popen:
        proc = self._start([f"--address={self.address}", f"--num-cpus={cpus}",
                            f"--resources={json.dumps(resources)}"], free_ports(6))
        self.workers.append(proc)
        self._wait_nodes(1 + len(self.workers))
        return proc

    def alive_nodes(self) -> int:
        """Alive nodes as the autoscaler reports them (``ray status``: one ``1 node_<id>`` line each)."""
        try:
            out = subprocess.run([RAY, "status", f"--address={self.address}"], env=self.env, capture_output=True,
                                 text=True, timeout=60)
        except subprocess.TimeoutExpired:  # a loaded machine: ask again
            return 0
        if out.returncode != 0 or "Active:" not in out.stdout:
            return 0
        active = out.stdout.split("Active:", 1)[1].split("Pending:", 1)[0]
        return sum(line.strip().startswith("1 node_") for line in active.splitlines())

    def _wait_nodes(self, n: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, log in zip([self.head, *self.workers], self.logs):
                if proc.poll() is not None:
                    raise RuntimeError(f"{log.stem} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if self.alive_nodes() >= n:
                return
            time.sleep(1)
        tails = "\n".join(f"{log.stem}: {log.read_text()[-1500:]}" for log in self.logs)
        raise RuntimeError(f"{n} Ray nodes did not come up within {timeout:.0f} s\n{tails}")

    def kill_worker(self, proc: subprocess.Popen) -> None:
        """SIGKILL a worker node: its ``ray start`` process group (raylet, object store, its workers)."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in [*self.workers, self.head]:
            kill_started(self.tmp, group=proc.pid)
