"""The runners end to end on real files and servers: compare (endpoint and local model, resumable), judge (live and
through Batch files), report (Markdown and PNG), and the clear errors bad input gets."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from batch_simulator import simulate_openai_batch
from eval import compare, judge, report
from eval.stand_in_judge import StandInJudge
from eval.tables import read_table
from ko_radiology.sample_corpus import SAMPLE_DIR, load_gold_translations
from ko_radiology.sections import join_sections
from tests.standins import FaultProxy

GOLD_QA = [json.loads(line) for line in (SAMPLE_DIR / "gold" / "qa.jsonl").read_text("utf-8").splitlines()]
TRANSLATIONS = {study: join_sections(sections, "ko") for study, sections in load_gold_translations(SAMPLE_DIR).items()}


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def answers_csv(path: Path, count: int = 4) -> Path:
    """Gold answers, English answers and empty answers to the first sample questions."""
    rows = [
        {
            "report": TRANSLATIONS[qa["study_id"]],
            "question": qa["instruction"],
            "reference": qa["answer"],
            "gold_answer": qa["answer"],
            "english_answer": "The lungs are clear and there is no acute process.",
            "empty_answer": "",
        }
        for qa in GOLD_QA[:count]
    ]
    return write_csv(path, rows)


@pytest.fixture(scope="module")
def stand_in():
    with StandInJudge() as server:
        yield server


def judge_args(stand_in, tmp_path: Path, *extra: str) -> list[str]:
    return ["--judge-model", "stand-in", "--judge-base-url", stand_in.base_url, "--api_key_env", "",
            "--cache-path", str(tmp_path / "judge.sqlite"), "--no_show_progress", *extra]  # fmt: skip


def test_compare_asks_an_endpoint_from_a_dataset_folder_and_resumes(tiny_server, gold_hub_folder, tmp_path, capsys):
    out = tmp_path / "answers.csv"
    with FaultProxy(tiny_server.base_url) as proxy:
        target = f"tiny={proxy.base_url}#{tiny_server.model}"
        argv = ["--input", str(gold_hub_folder), "--limit", "2", "--model", target, "--out", str(out)]
        argv += ["--max_new_tokens", "4", "--api_key_env", "", "--cache_path", str(tmp_path / "c.sqlite")]
        assert compare.main(argv) == 0
        assert len(proxy.forwarded) == 2
        assert proxy.forwarded[0]["messages"][1]["content"].startswith("[판독문]\n")  # the one prompt format
        assert compare.main(argv) == 0
        assert len(proxy.forwarded) == 2 and "tiny: 2 answered before, 0 to ask" in capsys.readouterr().out
    table = read_table(out)
    assert list(table.columns) == ["id", "report", "question", "reference", "tiny_answer"]
    assert table["id"].str.endswith(tuple("0123456789")).all()


def test_compare_runs_a_local_model_and_keeps_earlier_columns(tmp_path, capsys):
    questions = write_csv(
        tmp_path / "q.csv",
        [
            {"report": TRANSLATIONS[q["study_id"]], "question": q["instruction"], "old_answer": "이전 답"}
            for q in GOLD_QA[:1]
        ],
    )
    out = tmp_path / "answers.csv"
    argv = ["--input", str(questions), "--model", "tiny=embedded:tiny", "--out", str(out), "--max_new_tokens", "3"]
    assert compare.main(argv) == 0
    assert compare.main(argv) == 0
    assert "tiny: 1 answered before, 0 to ask" in capsys.readouterr().out
    table = read_table(out)
    assert table["tiny_answer"].str.len().gt(0).all() and table["old_answer"].tolist() == ["이전 답"]


def test_judge_scores_every_model_and_report_renders(stand_in, tmp_path):
    answers = answers_csv(tmp_path / "answers.csv")
    for kind in ("acc", "und"):
        out = tmp_path / f"scored_{kind}.csv"
        assert (
            judge.main(["--input", str(answers), "--type", kind, "--out", str(out), *judge_args(stand_in, tmp_path)])
            == 0
        )
    scored = read_table(tmp_path / "scored_acc.csv")
    assert scored["gold_score"].astype(float).mean() > 2 and set(scored["english_score"]) == {"1.0"}
    assert set(scored["empty_score"]) == {""} and set(scored["empty_error"]) == {
        "no answer to judge (missing or empty)"
    }
    assert all(json.loads(raw)[0].startswith('{"judgements"') for raw in scored["judge_raw"])
    orders = [tuple(json.loads(order)[0]) for order in scored["judge_order"]]  # the empty answer is never shown
    assert set(orders) == {("gold", "english"), ("english", "gold")} and set(scored["judge_seed"]) == {"0"}

    assert (
        report.main([str(tmp_path / "scored_acc.csv"), str(tmp_path / "scored_und.csv"), "--out", str(tmp_path / "r")])
        == 0
    )
    text = (tmp_path / "r" / "report.md").read_text()
    assert "| model | accuracy | understandability |" in text and "| empty | n/a · 4/4 failed |" in text
    assert "| accuracy | gold vs english | 4 |" in text and "| understandability | gold vs english | 4 |" in text
    assert (tmp_path / "r" / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_judge_through_batch_files_scores_from_the_cache(stand_in, tmp_path):
    answers = answers_csv(tmp_path / "answers.csv", count=2)
    base = [
        "--input",
        str(answers),
        "--type",
        "coc",
        "--out",
        str(tmp_path / "s.csv"),
        *judge_args(stand_in, tmp_path),
    ]
    assert judge.main([*base, "--batch-dir", str(tmp_path / "batch")]) == 0
    (batch_file,) = sorted((tmp_path / "batch").glob("*.jsonl"))
    simulate_openai_batch(batch_file, tmp_path / "out.jsonl", stand_in)
    calls = stand_in.calls
    assert judge.main([*base, "--ingest", str(tmp_path / "out.jsonl")]) == 0
    assert stand_in.calls == calls  # every judgement came from the ingested batch
    assert read_table(tmp_path / "s.csv")["gold_score"].astype(float).min() >= 1


@pytest.mark.parametrize(
    ("rows", "kind", "message"),
    [
        ([{"text": "판독문", "question": "질문", "a_answer": "답"}], "acc", "has no column 'report'"),
        ([{"report": "판독문", "question": "질문", "answer": "답"}], "acc", "has no NAME_answer column"),
        ([{"report": "판독문", "question": "질문", "a_answer": "답"}], "sim", "has no column 'reference'"),
        ([{"report": "판독문", "question": "", "a_answer": "답"}], "acc", "column 'question' is empty in rows [0]"),
    ],
)
def test_bad_input_gets_one_clear_line(rows, kind, message, stand_in, tmp_path, capsys):
    path = write_csv(tmp_path / "bad.csv", rows)
    assert judge.main(["--input", str(path), "--type", kind, *judge_args(stand_in, tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_report_refuses_what_judge_did_not_write(tmp_path, capsys):
    path = write_csv(tmp_path / "x.csv", [{"criterion": "accuracy", "a_score": "high"}])
    assert report.main([str(path), "--out", str(tmp_path / "r")]) == 2
    assert "column 'a_score' row 0 holds 'high', not a score" in capsys.readouterr().err


def test_judge_reads_a_config_file_that_flags_override(stand_in, tmp_path, capsys):
    """The judge takes its options from `--config` as the builder and training do; flags given too win, and the
    endpoint options are the client's own (`query_params` as a mapping; the old adapter could not fill a dict)."""
    answers = answers_csv(tmp_path / "answers.csv", count=2)
    config = tmp_path / "judge.yaml"
    settings = {"judge_model": "stand-in", "judge_base_url": "http://127.0.0.1:9/v1", "api_key_env": "",
                "criterion": "acc", "query_params": {"api-version": "2024-10-21"}, "show_progress": False}  # fmt: skip
    config.write_text(yaml.safe_dump(settings))
    with FaultProxy(stand_in.base_url) as proxy:
        argv = ["--input", str(answers), "--config", str(config), "--judge-base-url", proxy.base_url]
        argv += ["--cache-path", str(tmp_path / "1.sqlite"), "--out", str(tmp_path / "s.csv"), "--max-retries", "0"]
        judge.main(argv)  # the stand-in has no route with a query string: only what was sent matters here
        assert proxy.requests and {request.path for request in proxy.requests} == {
            "/v1/chat/completions?api-version=2024-10-21"
        }
        proxy.reset()
        judge.main([*argv, "--query-params", "api-version=2025-01-01", "--cache-path", str(tmp_path / "2.sqlite")])
        assert {request.path for request in proxy.requests} == {"/v1/chat/completions?api-version=2025-01-01"}
    capsys.readouterr()
    config.write_text(yaml.safe_dump(settings | {"judge_modle": "typo"}))
    assert judge.main(["--input", str(answers), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "'judge_modle' (did you mean judge_model?)" in err and len(err.splitlines()) == 1, err


def test_a_bad_option_value_is_one_line_and_exit_2(stand_in, tmp_path, capsys):
    """A dataclass's own check (`JudgeConfig.criterion`) was a traceback: parsing ran outside the error handling."""
    answers = answers_csv(tmp_path / "answers.csv", count=1)
    assert judge.main(["--input", str(answers), "--type", "bogus", *judge_args(stand_in, tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: Unknown judge criterion 'bogus'") and err.count("\n") == 1
