"""A real multi-node Ray cluster on this machine, for tests: separate `ray start` processes.

Each node is its own `ray start --block` process in its own process group, with the cluster's own
temp dir, free ports and a fresh auth token (token authentication stays on, as on a real cluster).
`stop()` ends only what this cluster started: the process groups of its nodes and any process whose
command line names its temp dir. It never calls `ray stop` (that would end every Ray of the user).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self, head_cpus: int = 1, own_tmpdir: bool = False):
        """``own_tmpdir``: the nodes use ``<temp_dir>/ray`` as Ray's default temp dir and ``env`` sets
        RAY_TMPDIR=<temp_dir>, so the ``ray_current_cluster`` marker that ``ray start --head`` writes
        (and a killed head leaves behind) is this cluster's own, seen only by processes given ``env``."""
        # Short path: Ray's unix sockets live under the temp dir (108-byte path limit).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
        self.ray_temp = self.temp_dir / "ray" if own_tmpdir else self.temp_dir
        self.port = free_port()
        self.dashboard_port = free_port()
        token_path = self.temp_dir / "auth_token"
        token_path.write_text(secrets.token_hex(32))
        token_path.chmod(0o600)
        self.env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path),
                        RAY_USAGE_STATS_ENABLED="0")
        if own_tmpdir:
            self.env["RAY_TMPDIR"] = str(self.temp_dir)
        self.env.pop("RAY_AUTH_TOKEN", None)
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self._start("head", ["--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                             "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                             f"--dashboard-port={self.dashboard_port}", f"--num-cpus={head_cpus}",
                             "--num-gpus=0", '--resources={"head_node": 1}'])
        try:
            self.wait_for_dashboard()
        except BaseException:
            self.stop()
            raise

    def _common_ports(self) -> list[str]:
        return [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                # below Linux's ephemeral range (32768+), where free_port() draws the others
                f"--min-worker-port={20000 + (self.port % 300) * 40}",
                f"--max-worker-port={20000 + (self.port % 300) * 40 + 39}"]

    def _start(self, name: str, args: list[str], temp_dir: Path | None = None) -> None:
        log = self.temp_dir / f"{name}.log"
        cmd = [RAY, "start", "--block", f"--temp-dir={temp_dir or self.ray_temp}", *self._common_ports(), *args]
        self.logs[name] = log
        self.nodes[name] = subprocess.Popen(cmd, env=self.env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def add_worker(self, name: str = "worker", num_cpus: int = 1, own_temp_dir: bool = False) -> None:
        """``own_temp_dir``: the node gets its own Ray temp dir (``<temp_dir>/<name>``), so a job's
        working directory is unpacked at another path there than on the head, as on a separate
        machine: a file the driver writes under a relative path does not exist on this node."""
        temp = self.temp_dir / name if own_temp_dir else None
        self._start(name, [f"--address={self.address}", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
                           "--num-gpus=0", f'--resources={{"{name}_node": 1}}'], temp_dir=temp)
        self.wait_for_nodes(len(self.nodes))

    def wait_for_dashboard(self, timeout: float = 90) -> None:
        import urllib.error
        import urllib.request
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nodes["head"].poll() is not None:
                raise RuntimeError(f"ray head exited:\n{self.logs['head'].read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2)
                return
            except urllib.error.HTTPError:  # up, and asking for the token: fine
                return
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"dashboard not up in {timeout} s:\n{self.logs['head'].read_text()[-3000:]}")

    def node_ids(self) -> dict[str, str]:
        """Node name ("head", "worker", ...) -> Ray node id, for the nodes alive now."""
        code = ("import json, ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR');"
                "print(json.dumps({r[:-5]: n['NodeID'] for n in ray.nodes() if n['Alive'] "
                "for r in n['Resources'] if r.endswith('_node')}))")
        out = subprocess.run([sys.executable, "-c", code, self.address], env=self.env,
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"could not list the nodes: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def alive_nodes(self) -> int:
        try:
            return len(self.node_ids())
        except RuntimeError:
            return -1

    def wait_for_nodes(self, n: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_nodes() == n:
                return
            time.sleep(1)
        raise TimeoutError(f"{n} nodes not alive after {timeout} s")

    def kill_node(self, name: str) -> None:
        """Kill a node hard (SIGKILL to its whole process group), as a machine failure would."""
        proc = self.nodes.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    @property
    def marker(self) -> Path:
        """Ray's current-cluster marker of this cluster (``ray start --head`` writes it)."""
        return self.ray_temp / "ray_current_cluster"

    def _own_pids(self) -> list[int]:
        pids = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if str(self.temp_dir).encode() in (d / "cmdline").read_bytes():
                        pids.append(int(d.name))
                except OSError:
                    pass
        return pids

    def stop(self) -> None:
        for proc in self.nodes.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        for proc in self.nodes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for pid in self._own_pids():  # stragglers that left the process group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.nodes.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
