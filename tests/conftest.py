"""Shared fixtures.

`gold_hub_folder` is the shipped sample built with `--gold` and exported as a Hub folder, exactly as users get it
(`load_dataset(folder, "qa")`); training tests learn from it.

`tiny_server` is a real `transformers serve` of the tiny random-weight model, for any test that needs an
OpenAI-compatible endpoint:

    def test_something(tiny_server):
        config = LLMClientConfig(base_url=tiny_server.base_url, model=tiny_server.model, api_key_env=None)

The server answers one request at a time on CPU; keep `max_tokens` small (a few tokens take ~0.1 s). It boots in
~20 s (mostly importing torch), so it is launched as soon as collection finds a test that needs it, and boots while
the tests before that one run.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dataset_builder.__main__ import main as dataset_builder
from dataset_builder.gold import SAMPLE_DIR
from ko_radiology.models import is_prepared, model_path

SERVER_START_TIMEOUT_S = 180


@pytest.fixture(scope="session")
def gold_hub_folder(tmp_path_factory) -> Path:
    """The sample built with `--gold` and exported as a Hub folder, exactly as users get it (`load_dataset`)."""
    build_dir = tmp_path_factory.mktemp("build")
    hub_dir = tmp_path_factory.mktemp("hub") / "ko-cxr-qa"
    assert dataset_builder(["build", "--data-dir", str(SAMPLE_DIR), "--gold", "--out", str(build_dir)]) == 0
    assert dataset_builder(["export", str(build_dir), "--out", str(hub_dir), "--repo-id", "org/ko-cxr-qa"]) == 0
    return hub_dir


@dataclass(frozen=True)
class TinyServer:
    """`model` is the folder path exactly as given to `transformers serve`: a server pinned to a local folder
    accepts only that string (or no `model` at all) and answers 400 to any other name."""

    base_url: str
    model: str
    log_path: Path


@dataclass
class ServerProcess:
    process: subprocess.Popen
    root: str
    model: str
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_LAUNCHED = pytest.StashKey[ServerProcess]()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_tiny_server() -> ServerProcess:
    """Start `transformers serve <tiny folder>` on a free loopback port without waiting for it."""
    folder = model_path("tiny")
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="tiny_server-")) / "serve.log"
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "warning"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    return ServerProcess(process, f"http://127.0.0.1:{port}", str(folder), log_path)


def wait_until_healthy(server: ServerProcess) -> None:
    """Poll `/health` (`/v1/models` scans the Hub cache and answers 500 when there is none, so it is no probe)."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log = server.log_path.read_text()[-3000:]
            raise RuntimeError(f"transformers serve exited with {server.process.returncode}:\n{log}")
        try:
            if httpx.get(f"{server.root}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    log = server.log_path.read_text()[-3000:]
    raise RuntimeError(f"transformers serve not healthy after {SERVER_START_TIMEOUT_S}s:\n{log}")


def pytest_collection_finish(session: pytest.Session) -> None:
    needs_server = any("tiny_server" in getattr(item, "fixturenames", ()) for item in session.items)
    if needs_server and is_prepared(model_path("tiny")):
        session.config.stash[_LAUNCHED] = launch_tiny_server()


def pytest_unconfigure(config: pytest.Config) -> None:
    if (server := config.stash.get(_LAUNCHED, None)) is not None:
        server.stop()


@pytest.fixture(scope="session")
def tiny_server(pytestconfig):
    """A real `transformers serve` on a free loopback port, warmed up with one request, stopped after the session."""
    if not is_prepared(model_path("tiny")):
        pytest.fail(f"The tiny model is not prepared at {model_path('tiny')}; run `make setup` first.")
    if (server := pytestconfig.stash.get(_LAUNCHED, None)) is None:
        server = pytestconfig.stash[_LAUNCHED] = launch_tiny_server()
    try:
        wait_until_healthy(server)
        warmup = {"model": server.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        httpx.post(f"{server.root}/v1/chat/completions", json=warmup, timeout=60).raise_for_status()
        yield TinyServer(base_url=f"{server.root}/v1", model=server.model, log_path=server.log_path)
    finally:
        server.stop()
