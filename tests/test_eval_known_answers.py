"""The known-answer set holds what its README promises, and `eval.calibrate` turns it into a table."""

import json
import re

from eval import calibrate
from eval.stand_in_judge import StandInJudge
from ko_radiology.sample_corpus import SAMPLE_DIR

ROWS = [json.loads(line) for line in calibrate.KNOWN_ANSWERS.read_text("utf-8").splitlines()]
SPLITS = json.loads((SAMPLE_DIR / "splits.json").read_text())
GOLD = {row["id"]: row for row in map(json.loads, (SAMPLE_DIR / "gold" / "qa.jsonl").read_text("utf-8").splitlines())}


def sides(text: str) -> list[str]:
    return re.findall("[좌우](?=측|폐|하엽|상엽|중엽|상부|하부)|왼쪽|오른쪽", text)


def test_at_least_40_test_questions_with_their_gold_answers():
    assert len(ROWS) >= 40 and len({row["id"] for row in ROWS}) == len(ROWS)
    for row in ROWS:
        assert row["study_id"] in SPLITS["test"]
        assert row["gold"] == GOLD[row["id"]]["answer"] and row["question"] == GOLD[row["id"]]["instruction"]
        assert set(row["variants"]) <= set(calibrate.DEFECTS)
        assert all(variant != row["gold"] for variant in row["variants"].values())


def test_each_defect_is_present_and_checkable():
    for row in ROWS:
        gold, variants = row["gold"], row["variants"]
        assert len(variants["padded_2x"]) >= 2 * len(gold) and variants["padded_2x"].startswith(gold)
        assert re.search(r"[A-Za-z]{3,}.*[A-Za-z]{3,}", variants["english_drift"].removeprefix(gold[:20]))
        others = [g["answer"] for g in GOLD.values() if g["study_id"] == row["study_id"] and g["id"] != row["id"]]
        assert variants["other_question"] in others
        if "wrong_laterality" in variants:
            assert sides(gold) and sides(variants["wrong_laterality"]) != sides(gold)
        if "finding_omitted" in variants:
            assert len(variants["finding_omitted"]) < len(gold) and gold.startswith(variants["finding_omitted"][:10])
    kinds = {kind for row in ROWS for kind in row["variants"]}
    assert kinds == set(calibrate.DEFECTS)


def test_calibrate_writes_a_row_per_criterion(tmp_path, capsys):
    out = tmp_path / "calibration.md"
    with StandInJudge() as judge:
        argv = ["--judge-model", "stand-in", "--judge-base-url", judge.base_url, "--api_key_env", ""]
        argv += ["--cache-path", str(tmp_path / "c.sqlite"), "--no_show_progress", "--limit", "3"]
        assert calibrate.main([*argv, "--criteria", "accuracy,understandability", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| criterion | wrong_laterality |") and len(rows) == 3
    understandability = rows[2].split(" | ")
    assert understandability[0] == "| understandability"
    assert understandability[7].startswith("1.00 [1.00, 1.00] (n=3)")  # english_drift: the stand-in always sees it
    assert understandability[9] == "0.00"  # the stand-in has no position bias: no pair flips
