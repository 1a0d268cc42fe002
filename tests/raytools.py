"""Running jobs/eval_all.py and local Ray clusters from tests, and stopping exactly what they started."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ray_env(tmp: str) -> dict[str, str]:
    """Environment for a child that starts its own Ray under the private temp dir ``tmp``."""
    env = dict(os.environ, RAY_TMPDIR=tmp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def short_tmpdir() -> str:
    """A short private directory (Ray's socket paths must stay under ~100 characters)."""
    return tempfile.mkdtemp(prefix="icr", dir="/tmp")


def pids_under(tmp: str) -> list[int]:
    """PIDs of processes whose command line mentions ``tmp`` (the Ray processes we started)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if tmp.encode() in (proc / "cmdline").read_bytes():
                out.append(int(proc.name))
        except OSError:
            pass
    return out


def kill_started(tmp: str, group: int | None = None) -> None:
    """SIGKILL the process group we started (if any) and every process still using ``tmp``."""
    if group is not None:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while (pids := pids_under(tmp)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def eval_all_cmd(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "jobs" / "eval_all.py"), *args]


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    import socket

    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass(frozen=True)
class RayHead:
    """A local Ray head started by ``start_head``: ``address`` (GCS, for ``ray.init`` and ``eval_all
    --address``), ``dashboard`` (URL, for ``ray job submit --address``), ``tmp`` (its temp dir) and
    ``process`` (the ``ray start --block`` process, leader of its process group)."""

    address: str
    dashboard: str
    tmp: str
    process: subprocess.Popen

    def stop(self) -> None:
        """SIGKILL the head's process group and every process still using its temp dir, then remove that dir."""
        kill_started(self.tmp, group=self.process.pid)
        self.process.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_head(tmp: str, num_cpus: int = 4) -> RayHead:
    """``ray start --head --block`` on 127.0.0.1, private ports and temp dir ``tmp`` (its output in
    ``<tmp>/head.log``); returns once its dashboard answers (jobs can then be submitted)."""
    import urllib.request

    gcs, dash, client, agent_http, agent_grpc, env_agent, metrics, nm, om = free_ports(9)
    ray_bin, log = str(Path(sys.executable).parent / "ray"), Path(tmp) / "head.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [ray_bin, "start", "--head", "--block", f"--temp-dir={tmp}", "--node-ip-address=127.0.0.1",
             f"--port={gcs}", f"--num-cpus={num_cpus}",
             "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
             f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_http}",
             f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={env_agent}",
             f"--metrics-export-port={metrics}", f"--node-manager-port={nm}", f"--object-manager-port={om}",
             "--disable-usage-stats"],
            env=ray_env(tmp), start_new_session=True, stdout=sink, stderr=subprocess.STDOUT)
    head = RayHead(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", tmp, proc)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start --head exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{head.dashboard}/api/version", timeout=2)
            return head
        except OSError:
            time.sleep(0.5)
    head.stop()
    raise RuntimeError("the Ray head's dashboard did not come up within 120 s")
