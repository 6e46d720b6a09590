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
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import datasets
import httpx
import pytest

from dataset_builder.__main__ import main as dataset_builder
from ko_radiology.embedded_models import is_prepared, model_path
from ko_radiology.processes import Service, launch_model_server, openai_url, stop, wait_ready
from ko_radiology.sample_corpus import SAMPLE_DIR
from tests.installed_wheel import InstalledWheel, build_and_install

SERVER_START_TIMEOUT_S = 180

# `datasets` caches a local folder by its name, not its content (see ko_radiology.dataset_folders), and the tests load
# folders as users do, with plain `load_dataset`: each session gets a cache of its own, so a folder named like one an
# earlier run (of older code) loaded never reads that run's rows. Subprocesses inherit it through the environment.
DATASETS_CACHE = Path(tempfile.mkdtemp(prefix="ko-radiology-tests-datasets-"))
os.environ["HF_DATASETS_CACHE"] = str(DATASETS_CACHE)
datasets.config.HF_DATASETS_CACHE = DATASETS_CACHE


@pytest.fixture(scope="session")
def gold_hub_folder(tmp_path_factory) -> Path:
    """The sample built with `--gold` and exported as a Hub folder, exactly as users get it (`load_dataset`)."""
    build_dir = tmp_path_factory.mktemp("build")
    hub_dir = tmp_path_factory.mktemp("hub") / "ko-cxr-qa"
    assert dataset_builder(["build", "--data-dir", str(SAMPLE_DIR), "--gold", "--out", str(build_dir)]) == 0
    assert dataset_builder(["export", str(build_dir), "--out", str(hub_dir), "--repo-id", "org/ko-cxr-qa"]) == 0
    return hub_dir


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory) -> InstalledWheel:
    """The project's wheel, built from this checkout and installed alone in an empty folder (tests/installed_wheel)."""
    return build_and_install(tmp_path_factory.mktemp("wheel"))


@dataclass(frozen=True)
class TinyServer:
    """`model` is the folder path exactly as given to `transformers serve`: a server pinned to a local folder
    accepts only that string (or no `model` at all) and answers 400 to any other name."""

    base_url: str
    model: str
    log_path: Path


_LAUNCHED = pytest.StashKey[Service]()


def launch_tiny_server() -> Service:
    return launch_model_server(model_path("tiny"), Path(tempfile.mkdtemp(prefix="tiny_server-")), OMP_NUM_THREADS="1")


def pytest_collection_finish(session: pytest.Session) -> None:
    needs_server = any("tiny_server" in getattr(item, "fixturenames", ()) for item in session.items)
    if needs_server and is_prepared(model_path("tiny")):
        session.config.stash[_LAUNCHED] = launch_tiny_server()


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(DATASETS_CACHE, ignore_errors=True)
    if (server := config.stash.get(_LAUNCHED, None)) is not None and server.process.poll() is None:
        stop(server)  # launched at collection, but no test that needs it ran


@pytest.fixture(scope="session")
def tiny_server(pytestconfig):
    """A real `transformers serve` on a free loopback port, warmed up with one request, stopped after the session."""
    if not is_prepared(model_path("tiny")):
        pytest.fail(f"The tiny model is not prepared at {model_path('tiny')}; run `make setup` first.")
    if (server := pytestconfig.stash.get(_LAUNCHED, None)) is None:
        server = pytestconfig.stash[_LAUNCHED] = launch_tiny_server()
    try:
        wait_ready(server, SERVER_START_TIMEOUT_S)
        warmup = {"model": str(model_path("tiny")), "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        httpx.post(f"{openai_url(server)}/chat/completions", json=warmup, timeout=60).raise_for_status()
        yield TinyServer(base_url=openai_url(server), model=str(model_path("tiny")), log_path=server.log_path)
    finally:
        stop(server)
