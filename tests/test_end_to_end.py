"""`make demo` and `make pipeline`, reduced but real: the README's first commands, so they cannot rot.

The demo trains two steps on the tiny model, merges, starts the local server (llama.cpp's `llama-server` on a GGUF
where it is built, else `transformers serve`) and the Space through `space/demo.py`, is asked a question through
`gradio_client`, and is stopped with SIGINT sent to its process group, as Ctrl-C in a terminal does; then no process
it started may be left. The pipeline reuses that adapter (same data, recipe and flags: same key), answers three test
questions with the base and the adapter, checks them against the gold answers, judges one criterion with the
rule-based stand-in judge and writes the report; a second run redoes nothing.
"""

import os
import re
import shutil
from pathlib import Path

import psutil
import pytest
from gradio_client import Client

from tests.foreground_run import ForegroundRun
from tests.standins import PROXY_VARIABLES, ConnectionCounter

TRAIN_FLAGS = (
    "--model_name_or_path embedded:tiny --dtype float32 --max_steps 2 --max_length 384 --eval_strategy no "
    "--eval_on_start false --save_strategy no --lora_target_modules q_proj v_proj"
)
START_TIMEOUT_S = 300
REPORT = "소견: 양측 폐는 깨끗하다. 기흉이나 흉수는 없다.\n\n결론: 급성 심폐 이상 소견 없음."


class MakeRun(ForegroundRun):
    """`make TARGET VAR=...` in its own process group (like a terminal's foreground job), its output collected live."""

    def __init__(self, target: str, env: dict[str, str] | None = None, **variables: str):
        command = ["make", "--no-print-directory", target] + [f"{name}={value}" for name, value in variables.items()]
        super().__init__(command, env)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name `text` (the run's own output folder)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if text in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{process.pid}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory, gold_hub_folder) -> Path:
    """OUT for both runs, seeded with the session's gold Hub folder: the same build and export commands the Makefile
    runs, already done once for the other tests."""
    out = tmp_path_factory.mktemp("e2e-out")
    shutil.copytree(gold_hub_folder, out / "sample" / "hub")
    os.utime(out / "sample" / "hub" / "README.md")  # newer than the sample files: make keeps it
    return out


def test_make_demo_serves_the_fine_tuned_model_and_ctrl_c_stops_everything(out_dir):
    """Run as on a machine whose environment names a proxy (and no NO_PROXY): nothing may reach it, and the demo must
    not wait on it (it used to poll its own servers through it until the start timeout)."""
    env = {name: value for name, value in os.environ.items() if name.lower() != "no_proxy"}
    with ConnectionCounter() as proxy:
        env.update({name: f"http://127.0.0.1:{proxy.port}" for name in PROXY_VARIABLES})
        demo = MakeRun("demo", env=env, OUT=out_dir, TRAIN_FLAGS=TRAIN_FLAGS)
        try:
            url = demo.wait_for(r"Ko-Radiology-GPT is running: (\S+)", START_TIMEOUT_S).group(1)
            pids = [int(pid) for pid in re.findall(r"Started .+? \(pid (\d+),", demo.output)]
            assert len(pids) == 2, demo.output  # the model server and the Space
            assert "merged" in demo.output and f"{out_dir}/adapters/" in demo.output

            client = Client(url, verbose=False)
            question = "이 판독문을 요약해 주세요."
            job = client.submit(
                question=question, report_text=REPORT, max_new_tokens=16, temperature=0.0, api_name="/ask"
            )
            updates = list(job)
            chat = job.result()[0]
            assert len(updates) >= 2, "the answer arrives as a stream of growing updates"
            assert [message["role"] for message in chat] == ["user", "assistant"]
            assert chat[-1]["content"], "the tiny model answers something (random words)"
        finally:
            returncode = demo.interrupt()

    assert proxy.connections == 0, "the environment proxy was reached"
    assert "Stopped Space." in demo.output, demo.output[-2000:]
    server = re.search(r"Serving with (llama\.cpp's llama-server|transformers serve)", demo.output)
    assert server, "the demo says which server it chose"
    assert f"Stopped {'llama-server' if 'llama' in server[1] else 'model server'}." in demo.output, demo.output[-2000:]
    assert "Stopping..." in demo.output and returncode is not None
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # the whole process group of each service is gone
    assert processes_mentioning(str(out_dir)) == []


def test_make_pipeline_runs_every_stage_then_redoes_nothing(out_dir):
    variables = {
        "OUT": out_dir,
        "TRAIN_FLAGS": TRAIN_FLAGS,
        "BASE": "embedded:tiny",
        "COMPARE_FLAGS": "--limit 3 --max-new-tokens 8",
        "CHECK_FLAGS": "--limit 3 --max-new-tokens 8",
        "JUDGE": "stand-in",
        "CRITERIA": "accuracy",
    }
    output = MakeRun("pipeline", **variables).finish(START_TIMEOUT_S)
    assert "Pipeline done." in output
    report = Path(re.search(r"judge report \(judge: stand-in\): (\S+report\.md)", output).group(1))
    table = report.read_text()
    assert "| base |" in table and "| fine-tuned |" in table and "accuracy" in table
    assert "Judge: eval.stand_in_judge (text rules, no LLM) - a local stand-in for GPT-4" in table
    assert (report.parent / "scores.png").stat().st_size > 0
    quality = Path(re.search(r"against the gold answers: (\S+quality\.json)", output).group(1))
    assert '"chrf_pp"' in quality.read_text()
    assert "the base answers as the fine-tuned model did" in output  # not a --backend flag the user never passed
    assert processes_mentioning(str(out_dir)) == []  # the judge servers were stopped

    again = MakeRun("pipeline", **variables).finish(60)
    for stage in ("training.sft", "eval.compare", "eval.check", "eval.judge", "eval.report"):
        assert f"-m {stage}" not in again, f"a second run redid {stage}:\n{again}"
    assert "Pipeline done." in again
