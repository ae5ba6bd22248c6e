"""Start the workers of a local multi-worker cluster (127.0.0.1 only) and collect what they did."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on the loopback address right now."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "sparsecomp.cli", *args]


class Cluster:
    """``n`` worker processes running ``command`` (a list), each in its own working directory
    ``dirs[i]`` (as separate machines would), with ``TF_CONFIG`` naming free loopback ports."""

    def __init__(self, command: list[str], dirs: list[Path], extra_env: dict | None = None):
        ports = free_ports(len(dirs))
        self.procs = []
        for i, d in enumerate(dirs):
            d.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ, TF_CONFIG=tf_config(ports, i), TF_CPP_MIN_LOG_LEVEL="3",
                       PYTHONPATH=str(ROOT), **(extra_env or {}))
            self.procs.append(subprocess.Popen(command, cwd=d, env=env, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True, start_new_session=True))

    def kill(self, i: int) -> None:
        os.killpg(self.procs[i].pid, signal.SIGKILL)

    def wait(self, timeout: float) -> list[tuple[int, str, str]]:
        """``(returncode, stdout, stderr)`` per worker; every worker still running after ``timeout``
        seconds is killed and the call fails, naming which ones hung."""
        deadline = time.time() + timeout
        out = []
        hung = []
        for i, p in enumerate(self.procs):
            try:
                o, e = p.communicate(timeout=max(deadline - time.time(), 0.1))
            except subprocess.TimeoutExpired:
                hung.append(i)
                os.killpg(p.pid, signal.SIGKILL)
                o, e = p.communicate()
            out.append((p.returncode, o, e))
        if hung:
            raise AssertionError(f"workers {hung} still ran after {timeout:.0f} s and were killed; their stderr: "
                                 + " | ".join(out[i][2][-1500:] for i in hung))
        return out
