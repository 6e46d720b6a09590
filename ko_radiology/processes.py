"""Start local services (a model server, the Space, a stand-in judge), wait until they answer, and stop them with
everything they started: what `python -m space.demo`, the tests and the benches share.

Every process started here gets its own process group; `stop` ends the whole group (SIGTERM, then SIGKILL), and a
child whose parent dies without cleaning up (kill -9) gets SIGTERM on Linux, so nothing is left running.
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ko_radiology.hardware import default_dtype

SERVER_START_TIMEOUT_S = 300.0
"""Loading a model on a busy 2-core CPU can take minutes; the Space and the stand-in judge start in seconds."""
STOP_TIMEOUT_S = 10.0
PORT_SEARCH = 100


class ServiceError(Exception):
    """A process could not be started or died; the message says which and shows its log."""


@dataclass
class Service:
    """One process: how to start it, where it logs, which URL answers 200 once it is ready."""

    name: str
    command: list[str]
    env: dict[str, str]
    ready_url: str
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def pick_port(preferred: int, what: str) -> int:
    """`preferred` if it is free on loopback, otherwise the next free port, saying so (never a traceback)."""
    for port in range(preferred, preferred + PORT_SEARCH):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port != preferred:
            print(f"Port {preferred} is in use (another demo still running?); the {what} uses port {port} instead.")
        return port
    raise ServiceError(
        f"Ports {preferred}-{preferred + PORT_SEARCH - 1} are all in use; pass a free one for the {what}."
    )


def free_port() -> int:
    """A loopback port the OS just handed out, bound and closed: nothing listens there until a service takes it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the parent dies without cleaning up (kill -9), Linux only."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def loopback_without_proxy(environ: dict[str, str]) -> dict[str, str]:
    """`NO_PROXY`/`no_proxy` extended by loopback, for a process that calls itself or its neighbours over loopback with
    a client that honours environment proxies: Gradio checks its own page that way at launch, and refuses to start when
    a proxy (a company's, set without `NO_PROXY`) answers for it."""
    listed = {host.strip() for name in ("NO_PROXY", "no_proxy") for host in environ.get(name, "").split(",")}
    hosts = ",".join(sorted(listed - {""}) + [host for host in LOOPBACK_HOSTS if host not in listed])
    return {"NO_PROXY": hosts, "no_proxy": hosts}


def start(service: Service) -> None:
    service.log_path.parent.mkdir(parents=True, exist_ok=True)
    with service.log_path.open("w") as log:
        service.process = subprocess.Popen(
            service.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **service.env},
            start_new_session=True,  # own process group: the terminal's Ctrl-C reaches us, and we stop the group
            preexec_fn=stop_with_parent,
        )
    print(f"Started {service.name} (pid {service.process.pid}, log {service.log_path}).", flush=True)


def wait_ready(service: Service, timeout_s: float) -> None:
    """Poll `ready_url` until it answers 200; fail with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceError(
                f"{service.name} exited with {service.process.returncode}. End of {service.log_path}:\n"
                f"{service.log_tail()}"
            )
        try:
            if httpx.get(service.ready_url, timeout=2.0, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise ServiceError(
        f"{service.name} did not answer {service.ready_url} within {timeout_s:.0f} s. End of log:\n"
        f"{service.log_tail()}"
    )


def stop(service: Service) -> None:
    """SIGTERM the service's whole process group, then SIGKILL whatever is still there after STOP_TIMEOUT_S."""
    if service.process is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(service.process.pid, sig)
        except ProcessLookupError:
            break
        try:
            service.process.wait(timeout=STOP_TIMEOUT_S)
            if not group_alive(service.process.pid):
                break
        except subprocess.TimeoutExpired:
            continue
    service.process.wait()
    print(f"Stopped {service.name}.", flush=True)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is left (zombies of ours are reaped by `wait`)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def model_server(model_dir: str, port: int, log_dir: Path, dtype: str) -> Service:
    """`transformers serve` pinned to `model_dir`; it accepts exactly that string as the request's model name."""
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", model_dir, "--dtype", dtype]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    ready_url = f"http://127.0.0.1:{port}/health"
    return Service("model server", command, env, ready_url, log_dir / f"model-server-{port}.log")


def launch_model_server(folder: str | Path, log_dir: Path, dtype: str = default_dtype("serve"), **env: str) -> Service:
    """`model_server` of a model folder on a free port, with `env` added, started without waiting for it (the caller
    does other work while it boots, then calls `wait_ready`)."""
    server = model_server(str(folder), free_port(), log_dir, dtype)
    server.env.update(env)
    start(server)
    return server


def openai_url(server: Service) -> str:
    """The OpenAI base URL of a server whose `ready_url` is its `/health`."""
    return server.ready_url.removesuffix("/health") + "/v1"
