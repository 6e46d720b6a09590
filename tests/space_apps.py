"""Launch the Space for tests: in this process (`build_demo`) or as the Hub does (`python app.py` in a folder); ask it
through `space.visitors`, the same API a visitor's browser uses."""

import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from ko_radiology.processes import free_port
from tests.installed_wheel import InstalledWheel

APP_START_TIMEOUT_S = 120


@contextmanager
def running_app(config):
    """`space.app.build_demo(config)` served on a free loopback port; yields its URL."""
    from space.app import build_demo

    demo = build_demo(config)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()


@contextmanager
def app_process(app_dir: Path, env: dict[str, str], installed: InstalledWheel | None = None):
    """`python app.py` run from `app_dir` with `env` added; yields its URL. With `installed`, as on the Hub: the
    project comes only from its installed wheel (`python -S`: not from the checkout or its editable install)."""
    port = free_port()
    env = {**(installed.env() if installed else os.environ), **env}
    env |= {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    command = [sys.executable, *(["-S"] if installed else []), "app.py"]
    log = Path(tempfile.mkdtemp(prefix="space_app-")) / "app.log"
    with log.open("w") as handle:
        process = subprocess.Popen(command, cwd=app_dir, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"app.py not serving {url} after {APP_START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
