"""A real `chatbot serve` process on 127.0.0.1 for the serving tests: started, waited for, stopped.

No in-process transport: the tests talk to the server over a socket with clients
nobody here wrote (the `openai` package, `httpx`, `httpx-sse`, Schemathesis), so
streams, disconnects, signals and several worker processes are the real thing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    db: str  # the SQLAlchemy URL it stores into
    process: subprocess.Popen
    log: Path
    home: Path
    args: list[str]

    @property
    def api(self) -> str:
        return f"{self.url}/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children of the server process started by multiprocessing's spawn)."""
        found = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()
        return [int(pid) for pid in found if _is_worker(int(pid))]


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 180.0, workers: int = 1) -> dict:
    """Poll /health until `workers` distinct worker processes have said 200; raise with the server's log if it
    exits or takes longer than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    ready: set[int] = set()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chatbot serve exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(f"{url}/health", timeout=5)
            if response.status_code == 200:
                ready.add(response.json()["worker"])
                if len(ready) >= workers:
                    return response.json()
        time.sleep(0.05 if ready else 0.2)
    raise RuntimeError(f"chatbot serve was not healthy after {timeout:g} s:\n{log.read_text(errors='replace')}")


def start_server(tmp_path: Path, *args: str, db: str | None = None, model: str = "scripted", wait: bool = True, env=None) -> Server:
    """`python -m chatbot serve --model MODEL --db DB --port FREE ARGS…` in its own process group."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    db = db or f"sqlite:///{tmp_path / 'served.db'}"
    port = free_port()
    command = [sys.executable, "-m", "chatbot", "serve", "--model", model, "--db", db, "--port", str(port), *args]
    log = tmp_path / f"serve-{port}.log"
    environment = {**os.environ, "CHATBOT_HOME": str(home), "PYTHONPATH": str(REPO), **(env or {})}
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", db, process, log, home, command)
    if wait:
        try:
            workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
            wait_healthy(server.url, process, log, workers=workers)
        except BaseException:
            stop(server)
            raise
    return server


def stop(server: Server, timeout: float = 60.0) -> int:
    """SIGTERM the server and wait for it (SIGKILL for the whole group if it hangs); returns its exit status."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.process.pid, signal.SIGKILL)  # leftover workers, if any
    return server.process.returncode


@contextlib.contextmanager
def running(tmp_path: Path, *args: str, **kwargs):
    server = start_server(tmp_path, *args, **kwargs)
    try:
        yield server
    finally:
        stop(server)
