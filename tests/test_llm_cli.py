"""What a user of the CLIs meets when a URL, the cache or the Batch API is wrong: one line naming the input and the
fix (no traceback), no secret echoed, nothing lost. Real components throughout: a second process holding the cache's
lock, a cache file with garbage pages, loopback servers answering 400 or 404, a closed port."""

import csv
import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataset_builder.__main__ import main as dataset_builder
from eval import compare, judge
from ko_radiology.llm import ResponseStore
from ko_radiology.processes import free_port  # bound, read and closed: nothing listens there
from ko_radiology.sample_corpus import SAMPLE_DIR
from tests.standins import BatchApiStandin, Fault, FaultProxy
from tests.test_llm_client import filled_cache

SECRET = "s3cr3tPW"


def build(out: Path, base_url: str, *extra: str) -> list[str]:
    """A translation build of the sample whose client is opened (cache check, guard) before any call is made."""
    return [
        "build", "--data-dir", str(SAMPLE_DIR), "--out", str(out), "--configs", "translation", "--limit", "1",
        "--model", "m", "--base-url", base_url, "--api-key-env", "", "--max-retries", "0", "--show-progress", "false",
        *extra,
    ]  # fmt: skip


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_locked_cache_is_in_use_not_invalid_and_is_left_intact(tmp_path, capsys):
    cache = filled_cache(tmp_path / "build" / "llm_cache.sqlite")
    before = sha256(cache)
    holder_script = (
        "import sqlite3, sys\n"
        f"db = sqlite3.connect({str(cache)!r}, isolation_level=None)\n"
        "db.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"  # holds the lock until the test closes its stdin
    )
    holder = subprocess.Popen([sys.executable, "-c", holder_script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        started = time.monotonic()
        assert dataset_builder(build(tmp_path / "build", "http://127.0.0.1:9/v1")) == 2
        waited = time.monotonic() - started
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    err = one_line_error(capsys)
    assert str(cache) in err and "in use" in err and "another process" in err and "intact" in err
    assert "wait for that process to finish, or stop it" in err
    assert "delete" not in err and "not a valid" not in err
    assert waited < 20, f"took {waited:.1f} s to say so"
    assert sha256(cache) == before
    store = ResponseStore(cache, run_id="after")
    assert store.db.execute("SELECT COUNT(*) FROM responses").fetchone() == (300,)
    store.close()


def test_a_cache_with_garbage_pages_is_named_in_one_line(tmp_path, capsys):
    cache = filled_cache(tmp_path / "build" / "llm_cache.sqlite")
    data = bytearray(cache.read_bytes())
    page = int.from_bytes(data[16:18], "big")  # the header stays valid: SQLite opens the file, then reads garbage
    for offset in range(2 * page, len(data), page):
        data[offset : offset + page] = bytes((offset // page + i) % 251 for i in range(page))
    cache.write_bytes(bytes(data))
    assert dataset_builder(build(tmp_path / "build", "http://127.0.0.1:9/v1")) == 2
    err = one_line_error(capsys)
    assert str(cache) in err and "not a valid SQLite cache" in err


def test_a_port_out_of_range_is_refused_in_one_line(tmp_path, capsys):
    assert dataset_builder(build(tmp_path / "build", "http://127.0.0.1:99999/v1")) == 2
    err = one_line_error(capsys)
    assert "'http://127.0.0.1:99999/v1' has an invalid port (a number from 1 to 65535)" in err


REJECTED_URLS = [
    f"ftp://user:{SECRET}@127.0.0.1/v1",  # not http(s)
    f"http://user:{SECRET}@/v1",  # no host
    f"http://user:{SECRET}@127.0.0.1:99999/v1",  # port out of range
    f"http://user:{SECRET}/v1",  # host lost: the key sits where the port goes
    f"user:{SECRET}@127.0.0.1:8000/v1",  # no scheme
    f"https://user:{SECRET}@api.example.com/v1?api-key={SECRET}",  # refused by the data-use guard
]


def judge_command(tmp_path: Path, base_url: str) -> int:
    answers = tmp_path / "answers.csv"
    with answers.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["report", "question", "a_answer"], ["판독문", "질문", "답"]])
    return judge.main([
        "--input", str(answers), "--type", "acc", "--judge-model", "m", "--judge-base-url", base_url,
        "--api_key_env", "", "--cache-path", str(tmp_path / "judge.sqlite"), "--max_retries", "0",
        "--no_show_progress",
    ])  # fmt: skip


def compare_command(tmp_path: Path, base_url: str) -> int:
    questions = tmp_path / "questions.csv"
    questions.write_text("report,question\n판독문,질문\n", encoding="utf-8")
    return compare.main([
        "--input", str(questions), "--out", str(tmp_path / "answers.csv"), "--model", f"served={base_url}",
        "--api_key_env", "", "--cache_path", str(tmp_path / "compare.sqlite"), "--max_retries", "0",
        "--no_show_progress",
    ])  # fmt: skip


def build_command(tmp_path: Path, base_url: str) -> int:
    return dataset_builder(build(tmp_path / "build", base_url, "--data-provenance", "mimic-cxr"))


@pytest.mark.parametrize(
    ("command", "url"),
    [(command, url) for command in (build_command, judge_command, compare_command) for url in REJECTED_URLS],
)
def test_a_rejected_url_never_shows_its_secret(command, url, tmp_path, capsys):
    assert command(tmp_path, url) != 0
    err = one_line_error(capsys)
    assert SECRET not in err and "***" in err


@pytest.mark.parametrize("command", [build_command, judge_command, compare_command])
def test_a_key_in_an_accepted_urls_query_never_shows_when_its_calls_fail(command, tmp_path, capsys):
    command(tmp_path, f"http://127.0.0.1:{free_port()}/v1?api-key={SECRET}")
    captured = capsys.readouterr()
    assert "failed" in captured.out + captured.err
    assert SECRET not in captured.out + captured.err and "Traceback" not in captured.out + captured.err


def batch(action: str, target: str | Path, out: Path, base_url: str) -> list[str]:
    endpoint = ["--model", "m", "--base-url", base_url, "--api-key-env", ""]
    return ["batch", action, str(target), "--out", str(out), *endpoint]


@pytest.fixture
def batch_file(tmp_path) -> Path:
    """A Batch input file as `build --batch-dir` writes it (no call is made to write it)."""
    args = build(tmp_path / "build", "http://127.0.0.1:9/v1", "--batch-dir", str(tmp_path / "b"))
    assert dataset_builder(args) == 0
    (path,) = (tmp_path / "b").glob("batch-*.jsonl")
    return path


def test_batch_files_hold_report_text_so_they_are_private_like_the_cache(batch_file):
    assert (batch_file.stat().st_mode & 0o777, batch_file.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert [path.name for path in batch_file.parent.iterdir()] == [batch_file.name]  # no temporary file left


def test_batch_submit_to_a_server_answering_400_is_one_line(batch_file, tmp_path, capsys):
    with FaultProxy("http://127.0.0.1:9/v1") as server:  # the scripted 400 answers before any upstream is asked
        server.script(Fault.http_status(400))
        capsys.readouterr()
        assert dataset_builder(batch("submit", batch_file, tmp_path / "build", server.base_url)) == 2
    err = one_line_error(capsys)
    assert f"submitting {batch_file}: {server.base_url} answered HTTP 400" in err and "injected 400" in err
    assert "is a Batch input file written by `build --batch-dir`" in err


@pytest.mark.parametrize(("action", "what"), [("submit", "submitting"), ("collect", "collecting batch")])
def test_batch_commands_against_a_closed_port_are_one_line(action, what, batch_file, tmp_path, capsys):
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    target = batch_file if action == "submit" else "batch_abc123"
    capsys.readouterr()
    assert dataset_builder(batch(action, target, tmp_path / "build", base_url)) == 2
    err = one_line_error(capsys)
    assert f"{what} {target}: {base_url} could not be reached" in err and "Connection refused" in err
    assert "check --base-url and that the server is up" in err


def test_batch_collect_of_an_unknown_batch_id_is_one_line(tmp_path, capsys):
    with BatchApiStandin(tiny_server=None) as api:  # no batch was created: every id is unknown
        assert dataset_builder(batch("collect", "batch_nope", tmp_path / "build", api.base_url)) == 2
    err = one_line_error(capsys)
    assert f"collecting batch batch_nope: {api.base_url} answered HTTP 404" in err
    assert "No batch found with id 'batch_nope'" in err and "pass the id `batch submit` printed" in err
