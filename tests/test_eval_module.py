"""`evaluate.load` of the metric folder in a fresh Python process, from the repo and from a copy of the folder alone
(as `evaluate.load("org/radiology_judge")` gets it from the Hub), scoring against the stand-in judge over HTTP."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eval.stand_in_judge import REFUSAL, StandInJudge

MODULE_DIR = Path(__file__).resolve().parents[1] / "eval" / "radiology_judge"
SCRIPT = """
import json, sys
import evaluate
judge = evaluate.load(sys.argv[1], sys.argv[2])
results = judge.compute(
    predictions=["우측 폐하엽에 경화가 있음.", None],
    reports=["우측 폐하엽에 경화가 있음."] * 2,
    questions=["경화는 어디에 있나요?"] * 2,
    references=["우측 폐하엽에 경화가 있습니다."] * 2,
    judge_model="stand-in",
    judge_base_url=sys.argv[3],
    api_key_env=None,
    cache_path=sys.argv[4],
    show_progress=False,
    **json.loads(sys.argv[5]),
)
print(json.dumps(results, ensure_ascii=False))
try:
    evaluate.load(sys.argv[1], "accurate")
except KeyError as error:
    print(error)
"""


@pytest.fixture(scope="module")
def stand_in():
    with StandInJudge() as judge:
        yield judge


def load_and_compute(path: str, config: str, base_url: str, tmp_path: Path, **options) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    cache = str(tmp_path / "cache.sqlite")
    command = [sys.executable, "-c", SCRIPT, path, config, base_url, cache, json.dumps(options)]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)


def test_the_folder_loads_alone_in_a_fresh_process(stand_in, tmp_path):
    """A copy of the folder outside the repo: only pip-installed packages (ko_radiology, evaluate) are importable."""
    alone = tmp_path / "radiology_judge"
    shutil.copytree(MODULE_DIR, alone)
    done = load_and_compute(str(alone), "similarity", stand_in.base_url, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results_line, unknown_line = done.stdout.strip().splitlines()[-2:]
    results = json.loads(results_line)
    assert results["scores"] == [4.0, None] and results["num_failures"] == 1
    assert results["mean"] == 4.0 and results["criterion"] == "similarity" and results["seed"] == 0
    assert "Unknown config 'accurate'" in unknown_line and "accuracy, conciseness" in unknown_line


def test_a_refusal_is_a_counted_failure_never_a_score(tmp_path):
    """A judge that ignores the schema (`structured_output=False`, as `make pipeline JUDGE=local` runs) and declines:
    "평가 불가 (1~4점 중 어느 것도 아님)" once read as 4.0 with no failure."""
    with StandInJudge(reply_format="refusal") as refusing:
        done = load_and_compute(str(MODULE_DIR), "accuracy", refusing.base_url, tmp_path, structured_output=False)
        assert refusing.calls == 1
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-2])
    assert results["scores"] == [None, None] and results["mean"] is None
    assert results["num_failures"] == 2 and results["errors"][1] == "no answer to judge (missing or empty)"
    assert results["errors"][0] == f"'1~4' is not one integer score 1-4 in the reply {REFUSAL!r}"


def test_a_missing_project_gets_evaluates_install_hint(tmp_path):
    """The import's `# From:` comment makes evaluate name the git URL to pip install (here: a renamed package)."""
    import evaluate

    alone = tmp_path / "radiology_judge"
    shutil.copytree(MODULE_DIR, alone)
    script = alone / "radiology_judge.py"
    script.write_text(
        script.read_text().replace("from ko_radiology.judge import", "from ko_radiology_gone.judge import")
    )
    with pytest.raises(ImportError, match=r"\['ko_radiology_gone'\] using 'pip install git\+https://github.com/"):
        evaluate.load(str(alone), "accuracy")
