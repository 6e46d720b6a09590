"""Translation and QA generation through real endpoints: `transformers serve` on the tiny model behind a fault proxy
that counts every request at the socket, and a local seq2seq model for the `hf` backend."""

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from datasets import load_dataset, load_from_disk

from dataset_builder.__main__ import main
from dataset_builder.build_dir import LOCK_FILE, STAGING_MARKER
from dataset_builder.schemas import FEATURES
from dataset_builder.translation_checks import check_section
from ko_radiology.cli import EXIT_PARTIAL
from ko_radiology.glossary import Glossary
from ko_radiology.llm import ResponseStore, cache_key
from ko_radiology.sample_corpus import SAMPLE_DIR
from tests.standins import BatchApiStandin, Fault, FaultProxy

REPORTS = 3
GLOSSARY = Glossary.from_tsv()


@pytest.fixture()
def proxy(tiny_server):
    with FaultProxy(tiny_server.base_url) as running:
        yield running


def build_args(proxy, tiny_server, out, limit=REPORTS, *extra):
    return [
        "build", "--data-dir", str(SAMPLE_DIR), "--out", str(out), "--configs", "translation,qa",
        "--limit", str(limit), "--model", tiny_server.model, "--base-url", proxy.base_url, "--api-key-env", "",
        "--max-tokens", "4", "--max-concurrency", "2", "--show-progress", "false", *extra,
    ]  # fmt: skip


def summary_of(out):
    return json.loads((out / "summary.json").read_text())


def test_generation_calls_the_endpoint_and_a_rerun_calls_it_never(proxy, tiny_server, tmp_path):
    out = tmp_path / "build"
    assert main(build_args(proxy, tiny_server, out)) == 0
    first = proxy.forwarded
    keys = [cache_key(body) for body in first]
    assert len(keys) == len(set(keys)), "a request was sent twice"
    translation = load_from_disk(str(out / "translation"))
    rows = [row for split in translation.values() for row in split]
    assert len(rows) == REPORTS
    assert all(row["translator_backend"] == "llm" and row["translator_model"] == tiny_server.model for row in rows)
    expected_flags = [
        [flag for s in row["sections"] for flag in check_section(s["name"], s["en"], s["ko"], GLOSSARY)]
        for row in rows
    ]
    assert [row["quality_flags"] for row in rows] == expected_flags
    assert any(expected_flags), "the tiny model's random Korean must be flagged"

    summary = summary_of(out)
    flag_counts = Counter(f"translation_flag:{flag.split(':')[1]}" for flags in expected_flags for flag in flags)
    assert {k: n for k, n in summary["counts"].items() if k.startswith("translation_flag:")} == flag_counts
    assert summary["build"]["translation"] == {"backend": "llm", "model": tiny_server.model, "endpoint": "loopback"}
    assert main(["export", str(out), "--out", str(tmp_path / "hub")]) == 0
    card = (tmp_path / "hub" / "README.md").read_text()  # the model's Korean is not "invented by the contributors"
    assert "The sample corpus's reports are invented" in card and "The model output in this release was" in card
    rejected = Counter(summary["qa_rejected"])
    questions = REPORTS * 4  # all four task types by default
    answers = questions - sum(n for reason, n in rejected.items() if reason.startswith("question_"))
    assert summary["counts"]["qa_records"] == answers - sum(n for r, n in rejected.items() if r.startswith("answer_"))
    issued = sum(len(row["sections"]) for row in rows) + questions + answers
    (ledger,) = summary["ledger_this_run"]
    assert ledger["sent"] == len(first)  # the ledger agrees with the socket
    assert ledger["sent"] + ledger["cached"] == issued  # repeated sections ("CHEST (PA AND LAT)") are paid once
    assert ledger["input_tokens"] > 0 and ledger["output_tokens"] > 0

    proxy.reset()
    assert main(build_args(proxy, tiny_server, out)) == 0
    assert proxy.forwarded == []
    (rerun,) = summary_of(out)["ledger_this_run"]
    assert rerun["sent"] == 0 and rerun["cached"] == issued
    assert load_from_disk(str(out / "translation"))["train"][:] == translation["train"][:]


def test_a_killed_run_resumes_without_paying_twice(proxy, tiny_server, tmp_path):
    out = tmp_path / "build"
    command = [sys.executable, "-m", "dataset_builder", *build_args(proxy, tiny_server, out, 6)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(proxy.forwarded) < 8 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "qa").exists(), "the run finished before it could be killed; kill it earlier"
    store = ResponseStore(out / "llm_cache.sqlite", run_id="inspect")
    before = [cache_key(body) for body in proxy.forwarded]
    completed = store.cached_keys(before)
    store.close()
    assert completed, "nothing completed before the kill"

    proxy.reset()
    assert main(build_args(proxy, tiny_server, out, 6)) == 0
    after = [cache_key(body) for body in proxy.forwarded]
    assert not completed & set(after), "a completed call was paid for again"
    assert len(after) == len(set(after))
    assert set(before) - completed <= set(after) | completed  # what was in flight at the kill is simply redone
    assert sum(load_from_disk(str(out / "translation")).num_rows.values()) == 6


def start_build_and_wait_for_its_calls(proxy, tiny_server, out):
    """A build in a process of its own, returned once its calls reach the endpoint (so it holds `out`, staging)."""
    command = [sys.executable, "-m", "dataset_builder", *build_args(proxy, tiny_server, out, 6)]
    with (out.parent / "first.log").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not proxy.requests and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert proxy.requests and process.poll() is None, "the build never called the endpoint"
    return process


def test_a_second_build_into_a_busy_out_is_refused_at_once_and_the_first_completes(proxy, tiny_server, tmp_path):
    """The second build must not delete the first's staging folder (the first then died after paying for its calls):
    it refuses before any call, naming the build that holds the folder."""
    out = tmp_path / "build"
    first = start_build_and_wait_for_its_calls(proxy, tiny_server, out)
    first.send_signal(signal.SIGSTOP)  # held mid-build, as by a slow endpoint
    try:
        calls = len(proxy.requests)
        command = [sys.executable, "-m", "dataset_builder", *build_args(proxy, tiny_server, out, 6)]
        second = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert len(proxy.requests) == calls, "the second build called the endpoint"
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    [line] = second.stderr.splitlines()
    assert line.startswith(f"error: --out {out} is being built by pid {first.pid} (python -m dataset_builder build")
    assert line.endswith("; wait for it to finish, or pass another --out.")
    assert first.wait(timeout=300) == 0, (out.parent / "first.log").read_text()
    assert sum(load_from_disk(str(out / "translation")).num_rows.values()) == 6
    assert main(build_args(proxy, tiny_server, out, 6)) == 0  # the folder is free again: answered from the cache


def test_a_killed_build_leaves_its_out_free_and_a_users_staging_folder_alone(proxy, tiny_server, tmp_path):
    """The OS lock dies with the process (no stale pid file to clear); the rerun removes only the killed build's
    staging folder, by its marker."""
    out = tmp_path / "build"
    (out / ".staging-mine").mkdir(parents=True)
    (out / ".staging-mine" / "draft.txt").write_text("mine")
    first = start_build_and_wait_for_its_calls(proxy, tiny_server, out)
    first.send_signal(signal.SIGKILL)
    first.wait()
    left = {path.name for path in out.glob(".staging-*") if (path / STAGING_MARKER).is_file()}
    assert len(left) == 1 and f"pid {first.pid} " in (out / LOCK_FILE).read_text()
    assert main(build_args(proxy, tiny_server, out, 6)) == 0
    assert sorted(path.name for path in out.glob(".staging-*")) == [".staging-mine"]
    assert (out / ".staging-mine" / "draft.txt").read_text() == "mine"


def test_garbage_from_the_endpoint_becomes_flags_not_a_crash(proxy, tiny_server, tmp_path):
    out = tmp_path / "build"
    proxy.script(Fault.malformed(match="IMPRESSION"), Fault.malformed(match="IMPRESSION"))
    args = build_args(proxy, tiny_server, out, 1, "--max-retries", "1", "--backoff-base-s", "0.01")
    assert main([arg if arg != "translation,qa" else "translation" for arg in args]) == EXIT_PARTIAL
    (row,) = load_from_disk(str(out / "translation"))["train"]
    impression = next(section for section in row["sections"] if section["name"] == "impression")
    assert impression["ko"] == "" and "impression:request_failed" in row["quality_flags"]
    impression_flags = [flag for flag in row["quality_flags"] if flag.startswith("impression:")]
    assert impression_flags == ["impression:request_failed"]  # an unanswered section is not checked as Korean
    assert summary_of(out)["counts"]["llm_failed_requests"] == 1


def test_dry_run_prints_costs_and_sends_nothing(proxy, tiny_server, tmp_path, capsys):
    args = build_args(proxy, tiny_server, tmp_path / "build", REPORTS, "--dry-run", "--input-price-per-1m", "2.5")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "to send" in out and "est. cost USD" in out and "qa generation: up to 24 more requests" in out
    assert proxy.forwarded == []


def remote_build(data_dir, out, *extra):
    args = ["build", "--data-dir", str(data_dir), "--out", str(out), "--configs", "translation", *extra]
    return main([*args, "--model", "gpt-4o-mini", "--base-url", "https://api.openai.com/v1"])


def test_credentialed_input_is_not_sent_to_a_remote_endpoint(tmp_path, capsys):
    mimic_tree = tmp_path / "mimic-cxr-reports"
    shutil.copytree(SAMPLE_DIR / "files", mimic_tree / "files")
    txt_folder = tmp_path / "my-reports"
    shutil.copytree(SAMPLE_DIR / "files" / "p10" / "p10000101", txt_folder)
    for data_dir, named in ((mimic_tree, "MIMIC-CXR"), (txt_folder, "reports you brought")):
        assert remote_build(data_dir, tmp_path / "out") == 2
        err = capsys.readouterr().err
        assert named in err and "--allow-remote-endpoint" in err and "api.openai.com" in err
    for data_dir in (mimic_tree, txt_folder):
        assert remote_build(data_dir, tmp_path / "out", "--data-provenance", "synthetic") == 2
        assert "cannot declare it otherwise" in capsys.readouterr().err


def test_the_synthetic_sample_may_go_to_a_remote_endpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert remote_build(SAMPLE_DIR, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY" in err and "credentialed" not in err  # past the guard, stopped only for want of a key


@pytest.fixture(scope="module")
def tiny_seq2seq(tmp_path_factory):
    """A two-layer T5 with random weights and the project's tokenizer: a real local translation model."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from ko_radiology.embedded_models import prepare_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(prepare_tiny_model())
    config = T5Config(
        vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("t5")
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_hf_backend_translates_with_a_local_model(tiny_seq2seq, tmp_path):
    out = tmp_path / "build"
    args = ["build", "--data-dir", str(SAMPLE_DIR), "--out", str(out), "--configs", "translation", "--limit", "2"]
    assert main([*args, "--translator", "hf", "--hf-translation-model", str(tiny_seq2seq), "--max-tokens", "8"]) == 0
    rows = [row for split in load_from_disk(str(out / "translation")).values() for row in split]
    assert len(rows) == 2
    assert {row["translator_backend"] for row in rows} == {"hf"}
    assert {row["translator_model"] for row in rows} == {str(tiny_seq2seq)}
    # each section's text is what that local model generates for that section's English
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_seq2seq)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_seq2seq).eval()
    section = rows[0]["sections"][-1]
    generated = model.generate(**tokenizer([section["en"]], return_tensors="pt"), max_new_tokens=8)
    assert section["ko"] == tokenizer.decode(generated[0], skip_special_tokens=True).strip()


def test_batch_submit_and_collect_fill_the_builds_cache(proxy, tiny_server, tmp_path, capsys):
    out, batches = tmp_path / "build", tmp_path / "batches"
    args = build_args(proxy, tiny_server, out, 2)
    args[args.index("translation,qa")] = "translation"
    assert main([*args, "--batch-dir", str(batches)]) == 0
    assert proxy.forwarded == [] and not (out / "translation").exists()
    (batch_file,) = batches.glob("batch-*.jsonl")
    lines = len(batch_file.read_text().splitlines())
    with BatchApiStandin(tiny_server) as api:
        endpoint = ["--out", str(out), "--model", tiny_server.model, "--base-url", api.base_url, "--api-key-env", ""]
        endpoint += ["--query-params", "api-version=2024-10-21"]  # Azure's Batch API needs it on every call
        capsys.readouterr()
        assert main(["batch", "submit", str(batch_file), *endpoint]) == 0
        batch_id = capsys.readouterr().out.split("submitted as batch ")[1].split()[0]
        assert main(["batch", "collect", batch_id, *endpoint]) == 0  # no --cache-path: OUT's cache, like build
    collected = capsys.readouterr().out
    assert f"{lines} answers cached in {out / 'llm_cache.sqlite'}" in collected and "1 failed" in collected
    (output,) = (out / "batches").glob("batch_0-output.jsonl")  # report text and answers: private like the cache
    assert (output.stat().st_mode & 0o777, output.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert api.calls == [
        f"{call}?api-version=2024-10-21"
        for call in ("POST /v1/files", "POST /v1/batches", "GET /v1/batches/batch_0", "GET /v1/files/file-1/content")
    ]

    assert main([*args, "--batch-dir", str(batches)]) == 0
    assert proxy.forwarded == []
    assert sum(load_from_disk(str(out / "translation")).num_rows.values()) == 2
    (ledger,) = summary_of(out)["ledger_all_runs"]
    assert ledger["batch"] == lines and ledger["sent"] == 0


def test_a_build_whose_every_request_failed_fails_and_the_next_one_resumes(proxy, tiny_server, tmp_path, capsys):
    out = tmp_path / "build"
    args = build_args(proxy, tiny_server, out, 2, "--max-retries", "0")
    assert main([*args, "--configs", "notes"]) == 0
    notes_before = sorted(path.name for path in (out / "notes").rglob("*"))
    proxy.script(*[Fault.http_status(503) for _ in range(40)])
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    sent = len(proxy.requests)
    assert "\n" not in err and f"translation: all {sent} requests to {proxy.base_url} failed" in err and "503" in err
    assert ".." not in err and err.endswith("(answered calls are cached).")
    assert sorted(path.name for path in out.iterdir()) == [LOCK_FILE, "llm_cache.sqlite", "notes", "summary.json"]
    assert sorted(path.name for path in (out / "notes").rglob("*")) == notes_before  # nothing replaced

    proxy.reset()
    assert main(args) == 0  # same command, endpoint healthy: the documented resume path
    assert sum(load_from_disk(str(out / "translation")).num_rows.values()) == 2
    assert not (out / "notes").exists(), "OUT holds exactly the configs of its last build"
    hub = tmp_path / "hub"
    assert main(["export", str(out), "--out", str(hub)]) == 0  # splits without rows are left out, not empty
    assert sum(load_dataset(str(hub), "translation").num_rows.values()) == 2
    readme = (hub / "README.md").read_text()
    assert f"`{tiny_server.model}` through an OpenAI-compatible endpoint, a model served on the build" in readme


def test_failed_question_requests_are_their_own_reason(proxy, tiny_server, tmp_path):
    out = tmp_path / "build"
    proxy.script(Fault.http_status(500, match="작업 유형"), Fault.http_status(500, match="작업 유형"))
    assert main(build_args(proxy, tiny_server, out, 1, "--max-retries", "0")) == EXIT_PARTIAL
    summary = summary_of(out)
    assert summary["qa_rejected"]["question_request_failed"] == 2
    assert "question_malformed" not in summary["qa_rejected"] and summary["counts"]["llm_failed_requests"] == 2


def user_turns(bodies):
    return [body["messages"][-1]["content"] for body in bodies]


def test_failed_calls_exit_3_keep_qa_off_cut_reports_and_a_rerun_sends_only_what_they_cost(
    proxy, tiny_server, tmp_path, capsys
):
    """One FINDINGS translation and one question request fail (no retries): the build is saved and exits 3; no QA
    request carries the report that lost its FINDINGS; the same command again sends the two failed calls and the QA
    of the report they completed, nothing that was answered, and exits 0."""
    out = tmp_path / "build"
    args = build_args(proxy, tiny_server, out, REPORTS, "--max-retries", "0")
    proxy.script(Fault.http_status(500, match="Section: FINDINGS"), Fault.http_status(500, match="작업 유형"))
    capsys.readouterr()
    assert main(args) == EXIT_PARTIAL
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: 2 model calls failed") and "--allow-partial" in err
    translations = [row for split in load_from_disk(str(out / "translation")).values() for row in split]
    (cut,) = [row for row in translations if "findings:request_failed" in row["quality_flags"]]
    assert "소견:" not in cut["report_ko"]
    answered = {cache_key(body) for body in proxy.forwarded}
    failed = {cache_key(r.body) for r in proxy.requests if r.outcome == "status:500"}
    assert not [turn for turn in user_turns(proxy.forwarded) if cut["report_ko"] in turn and "[판독문]" in turn]
    counts = summary_of(out)["counts"]
    assert counts["qa_skipped:translation_request_failed"] == 1 and counts["llm_failed_requests"] == 2

    proxy.reset()
    assert main(args) == 0 and "error" not in capsys.readouterr().err
    rerun = {cache_key(body): body for body in proxy.forwarded}
    assert failed <= rerun.keys() and not answered & rerun.keys()
    (whole,) = [
        row for split in load_from_disk(str(out / "translation")).values() for row in split
        if row["study_id"] == cut["study_id"]
    ]  # fmt: skip
    assert "소견:" in whole["report_ko"] and "findings:request_failed" not in whole["quality_flags"]
    others = [body for key, body in rerun.items() if key not in failed]  # the QA the cut report did not get
    assert others and all(whole["report_ko"] in turn for turn in user_turns(others))
    counts = summary_of(out)["counts"]
    assert counts["llm_failed_requests"] == 0 and not any(key.startswith("qa_skipped") for key in counts)


def test_qa_rows_carry_their_translations_flags_and_allow_partial_exits_0(proxy, tiny_server, tmp_path, capsys):
    out = tmp_path / "build"
    args = build_args(proxy, tiny_server, out, REPORTS, "--max-retries", "0", "--generator", "gold")
    proxy.script(Fault.http_status(500, match="Section: FINDINGS"))
    capsys.readouterr()
    assert main([*args, "--allow-partial"]) == 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("warning: 1 model calls failed") and "accepted by --allow-partial" in err
    translations = {row["study_id"]: row for row in load_from_disk(str(out / "translation"))["train"]}
    (cut,) = [study for study, row in translations.items() if "findings:request_failed" in row["quality_flags"]]
    qa = load_from_disk(str(out / "qa"))["train"]
    assert qa.features == FEATURES["qa"] and set(qa["study_id"]) == set(translations) - {cut}
    for row in qa:
        assert row["translation_flags"] == translations[row["study_id"]]["quality_flags"]
        assert row["report_ko"] == translations[row["study_id"]]["report_ko"]
    assert summary_of(out)["counts"]["qa_skipped:translation_request_failed"] == 1


def corrupt(cache):
    cache.write_bytes(b"not a database" * 100)


def make_read_only(cache):
    """Immutable (`chattr +i`), since a 0444 mode does not stop root, who runs these tests in CI."""
    for leftover in cache.parent.glob(f"{cache.name}-*"):  # WAL files of the finished run
        leftover.unlink()
    if subprocess.run(["chattr", "+i", str(cache)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")


@pytest.mark.parametrize("spoil", [corrupt, make_read_only])
def test_an_unusable_cache_fails_up_front_and_replaces_nothing(proxy, tiny_server, tmp_path, capsys, spoil):
    out = tmp_path / "build"
    args = build_args(proxy, tiny_server, out, 1)
    assert main(args) == 0
    kept = ("llm_cache", LOCK_FILE)  # the cache, and the lock each build writes its pid into
    built = {path: path.stat().st_mtime_ns for path in out.rglob("*") if not path.name.startswith(kept)}
    cache = out / "llm_cache.sqlite"
    spoil(cache)
    capsys.readouterr()
    try:
        assert main(args) == 2  # fully cached: only the cache's own writes (ledger rows) could fail
    finally:
        subprocess.run(["chattr", "-i", str(cache)], capture_output=True)
    err = capsys.readouterr().err
    assert str(cache) in err and len(err.strip().splitlines()) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if not p.name.startswith(kept)} == built
