"""Translation and QA generation through real endpoints: `transformers serve` on the tiny model behind a fault proxy
that counts every request at the socket, and a local seq2seq model for the `hf` backend."""

import json
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from datasets import load_from_disk

from dataset_builder.__main__ import main
from dataset_builder.gold import SAMPLE_DIR
from ko_radiology.llm_cache import ResponseStore, cache_key
from ko_radiology.llm_client import LLMClient, LLMClientConfig
from tests.batch_simulator import simulate_openai_batch
from tests.fault_proxy import Fault, FaultProxy

REPORTS = 3


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

    summary = summary_of(out)
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


def test_garbage_from_the_endpoint_becomes_flags_not_a_crash(proxy, tiny_server, tmp_path):
    out = tmp_path / "build"
    proxy.script(Fault.malformed(match="IMPRESSION"), Fault.malformed(match="IMPRESSION"))
    args = build_args(proxy, tiny_server, out, 1, "--max-retries", "1", "--backoff-base-s", "0.01")
    assert main([arg if arg != "translation,qa" else "translation" for arg in args]) == 0
    (row,) = load_from_disk(str(out / "translation"))["train"]
    impression = next(section for section in row["sections"] if section["name"] == "impression")
    assert impression["ko"] == "" and "impression:empty" in row["quality_flags"]
    assert summary_of(out)["counts"]["llm_failed_requests"] == 1


def test_dry_run_prints_costs_and_sends_nothing(proxy, tiny_server, tmp_path, capsys):
    args = build_args(proxy, tiny_server, tmp_path / "build", REPORTS, "--dry-run", "--input-price-per-1m", "2.5")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "to send" in out and "est. cost USD" in out and "qa generation: up to 24 more requests" in out
    assert proxy.forwarded == []


def test_credentialed_input_is_not_sent_to_a_remote_endpoint(tmp_path, capsys):
    args = ["build", "--data-dir", str(SAMPLE_DIR), "--out", str(tmp_path), "--configs", "translation"]
    args += ["--model", "gpt-4o-mini", "--base-url", "https://api.openai.com/v1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "credentialed" in err and "--allow-remote-endpoint" in err and "api.openai.com" in err


@pytest.fixture(scope="module")
def tiny_seq2seq(tmp_path_factory):
    """A two-layer T5 with random weights and the project's tokenizer: a real local translation model."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from ko_radiology.models import prepare_tiny_model

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


def test_batch_api_round_trip_then_the_build_sends_no_translation(proxy, tiny_server, tmp_path):
    out, batches = tmp_path / "build", tmp_path / "batches"
    args = build_args(proxy, tiny_server, out, 2)
    args[args.index("translation,qa")] = "translation"
    assert main([*args, "--batch-dir", str(batches)]) == 0
    assert proxy.forwarded == [] and not (out / "translation").exists()
    (batch_file,) = batches.glob("batch-*.jsonl")
    output = tmp_path / "output.jsonl"
    simulate_openai_batch(batch_file, output, tiny_server)  # what `batch collect` downloads
    client = LLMClient(LLMClientConfig(model=tiny_server.model, cache_path=str(out / "llm_cache.sqlite")))
    assert client.ingest_batch_output(output).stored == len(batch_file.read_text().splitlines())
    client.close()

    assert main([*args, "--batch-dir", str(batches)]) == 0
    assert proxy.forwarded == []
    assert sum(load_from_disk(str(out / "translation")).num_rows.values()) == 2
    (ledger,) = summary_of(out)["ledger_all_runs"]
    assert ledger["batch"] > 0 and ledger["sent"] == 0
