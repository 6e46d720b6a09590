"""Dataset mixtures (`training/mixture.py`): qa folders and instruction/answer files drawn by weight, the counts
logged and on the card, report-less rows as plain single-turn chats, and one-line errors naming the entry."""

import contextlib
import io
import json
import re
from pathlib import Path

import datasets
import pytest
import yaml
from transformers import AutoTokenizer

from ko_radiology.dataset_folders import load_qa_splits
from ko_radiology.embedded_models import prepare_tiny_model
from ko_radiology.prompts import PLAIN_SYSTEM_PROMPT, SYSTEM_PROMPT, build_messages
from tests.test_training import write_recipe, write_split
from training.data import group_by_report, prepare_qa_split
from training.instruction_files import read_instruction_file, to_qa_shape
from training.mixture import load_mixture, parse_mixture
from training.model_card import write_model_card
from training.sft import cli, main, parse_args

MIXED = {  # the training tests' tiny recipe, one step, validated on two examples of the first entry's split
    "dataset_test_split": "validation",
    "group_by_report": True,
    "max_steps": 1,
    "eval_strategy": "steps",
    "eval_steps": 1,
    "eval_max_examples": 2,
    "save_strategy": "no",
}
SECOND_ROWS = 20
PLAIN_ROWS = [  # AI Hub-style instruction/input/output rows, one with no instruction
    {"instruction": "고혈압 환자가 줄여야 할 음식은 무엇인가요?", "input": "", "output": "짠 음식과 가공식품입니다."},
    {
        "instruction": "이 증상이 감기인지 알려 주세요.",
        "input": "콧물과 기침이 사흘째 있습니다.",
        "output": "감기일 수 있습니다.",
    },
    {"instruction": "당뇨병의 흔한 증상은 무엇인가요?", "input": "", "output": "갈증과 잦은 소변입니다."},
    {"instruction": "", "input": "", "output": "질문이 없는 행"},
    *({"instruction": f"건강 질문 {i}번", "input": "", "output": f"건강 답변 {i}번입니다."} for i in range(8)),
]


def second_rows(count: int) -> dict[str, list]:
    """Questions about 5 reports of another (machine-generated) export: 4 questions each."""
    return {
        "report_ko": [f"소견: 우하엽에 경화가 있음 ({i // 4}번 판독문)." for i in range(count)],
        "instruction": [f"질문 {i}: 경화가 어디에 있나요?" for i in range(count)],
        "answer": [f"우하엽에 있습니다 ({i})." for i in range(count)],
        "generator_model": ["some-llm"] * count,
    }


@pytest.fixture(scope="module")
def second_folder(tmp_path_factory) -> Path:
    return write_split(tmp_path_factory.mktemp("second") / "other-qa", second_rows(SECOND_ROWS), splits=("train",))


@pytest.fixture(scope="module")
def plain_jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plain") / "medical-qa.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in PLAIN_ROWS), encoding="utf-8")
    return path


def mixture(gold_hub_folder, second_folder, plain_jsonl, seed=0) -> dict:
    return {
        "datasets": [
            {"id": str(gold_hub_folder), "config": "qa", "split": "train", "weight": 1.0},
            {"id": str(second_folder), "config": "qa", "split": "train", "weight": 0.3},
            {"id": str(plain_jsonl), "columns": {"output": "answer"}, "weight": 0.5},
        ],
        "seed": seed,
    }


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, gold_hub_folder, second_folder, plain_jsonl):
    """One step on the sample (weight 1.0), a second qa folder (0.3) and a JSONL file (0.5), validated on the
    sample's validation split; what it printed."""
    prepare_tiny_model()
    tmp = tmp_path_factory.mktemp("mixed")
    datasets_mixture = mixture(gold_hub_folder, second_folder, plain_jsonl)
    recipe = write_recipe(tmp / "mixed.yaml", **MIXED, dataset_mixture=datasets_mixture)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        trainer = main(*parse_args(["--config", str(recipe), "--output_dir", str(tmp / "out")]))
    return trainer, tmp / "out", printed.getvalue()


def test_each_dataset_gives_its_weights_share_of_rows_and_the_counts_are_logged(mixed_run, gold_hub_folder):
    trainer, output_dir, printed = mixed_run
    sample_rows = load_qa_splits(str(gold_hub_folder), "qa", ["train"])["train"].num_rows
    plain_rows = len(PLAIN_ROWS) - 1  # the row without an instruction is dropped
    assert f"dataset_mixture entry 1 ({gold_hub_folder}): drew {sample_rows} of {sample_rows} rows" in printed
    assert f"drew {int(SECOND_ROWS * 0.3)} of {SECOND_ROWS} rows of split train (weight 0.3)." in printed
    assert f"drew {int(plain_rows * 0.5)} of {plain_rows} rows of split train (weight 0.5); no reports" in printed
    assert "[train]: dropped 1 of 12 rows with no instruction or answer." in printed
    total = sample_rows + int(SECOND_ROWS * 0.3) + int(plain_rows * 0.5)
    assert f"dataset_mixture: {total} training rows from 3 datasets (seed 0)." in printed
    assert trainer.state.global_step == 1 and any("eval_loss" in entry for entry in trainer.state.log_history)

    values = json.loads((output_dir / "model_card.json").read_text())
    assert values["train_examples"] == total and values["eval_examples"] == 2
    assert [(entry["dataset"], entry["weight"], entry["drawn"], entry["rows"]) for entry in values["mixture"]] == [
        ("the synthetic sample", 1.0, sample_rows, sample_rows),
        ("a local export (other-qa)", 0.3, 6, SECOND_ROWS),
        ("the file medical-qa.jsonl", 0.5, 5, plain_rows),
    ]


def test_the_card_lists_each_dataset_its_weight_and_the_rows_drawn(mixed_run, gold_hub_folder):
    _, output_dir, _ = mixed_run
    card = (output_dir / "README.md").read_text()
    sample_rows = load_qa_splits(str(gold_hub_folder), "qa", ["train"])["train"].num_rows
    assert "trained with Ko-Radiology-GPT's `training/sft.py` on a mixture of the synthetic sample, a local" in card
    assert "- Dataset: a mixture of 3 datasets (`dataset_mixture`" in card and "with seed 0)" in card
    assert (
        f"  - the synthetic sample, config `qa`, split `train`: weight 1.0, {sample_rows} of {sample_rows} rows\n"
        in card
    )
    assert "  - a local export (other-qa), config `qa`, split `train`: weight 0.3, 6 of 20 rows\n" in card
    assert (
        "  - the file medical-qa.jsonl, split `train`: weight 0.5, 5 of 11 rows, no reports (plain instruction chats)"
        in card
    )
    assert "- Validation: split `validation` of the synthetic sample (2 examples)" in card
    assert "the file medical-qa.jsonl (5 rows)" in card  # in the limits, as data mixed in besides the sample
    assert "datasets:" not in card.split("---")[1]  # all local: no Hub ids to link


def test_the_card_links_the_hub_datasets_of_a_mixture_and_renders_values_saved_before_mixtures(mixed_run, tmp_path):
    _, output_dir, _ = mixed_run
    values = json.loads((output_dir / "model_card.json").read_text())
    values["mixture"][1]["hub_id"] = "org/other-qa"  # as a Hub id entry records itself
    metadata = yaml.safe_load(write_model_card(tmp_path / "hub", values).read_text().split("---")[1])
    assert metadata["datasets"] == ["org/other-qa"]
    older = {key: value for key, value in values.items() if key not in ("mixture", "mixture_seed")}
    card = write_model_card(tmp_path / "older", {**older, "dataset": "the synthetic sample"}).read_text()
    assert "- Dataset: the synthetic sample, config `qa`; trained on split `train`" in card


def test_draws_are_seeded_and_keep_the_rows_of_each_dataset(gold_hub_folder, second_folder, plain_jsonl):
    config = parse_mixture(mixture(gold_hub_folder, second_folder, plain_jsonl))
    with contextlib.redirect_stdout(io.StringIO()):
        first, facts = load_mixture(config, "train", "validation")
        again, _ = load_mixture(config, "train", "validation")
        other, _ = load_mixture(parse_mixture(mixture(gold_hub_folder, second_folder, plain_jsonl, seed=1)), "t", None)
    assert first["train"]["instruction"] == again["train"]["instruction"]
    second = [row for row in first["train"] if "우하엽에 경화가 있음" in row["report_ko"]]
    assert len(second) == facts[1].drawn == 6
    assert {row["instruction"] for row in second} != {
        row["instruction"] for row in other["t"] if "우하엽에" in row["report_ko"]
    }
    plain = [row for row in first["train"] if not row["report_ko"]]
    assert len(plain) == 5 and {row["instruction"] for row in plain} <= {row["instruction"] for row in PLAIN_ROWS} | {
        "이 증상이 감기인지 알려 주세요.\n\n콧물과 기침이 사흘째 있습니다."
    }
    validation = load_qa_splits(str(gold_hub_folder), "qa", ["validation"])["validation"]
    assert first["validation"]["instruction"] == validation["instruction"]  # the first entry's, whole and in order
    assert first["train"].column_names == first["validation"].column_names == ["report_ko", "instruction", "answer"]


def test_rows_without_a_report_are_plain_single_turn_chats(gold_hub_folder):
    messages = build_messages("", "당뇨병의 흔한 증상은?", "갈증입니다.")
    assert messages == [
        {"role": "system", "content": PLAIN_SYSTEM_PROMPT},
        {"role": "user", "content": "당뇨병의 흔한 증상은?"},
        {"role": "assistant", "content": "갈증입니다."},
    ]
    assert "판독문" not in PLAIN_SYSTEM_PROMPT and "판독문" in SYSTEM_PROMPT
    assert build_messages(None, "질문") == build_messages("  ", "질문")
    assert build_messages("폐는 깨끗함.", "질문")[0]["content"] == SYSTEM_PROMPT

    sample = load_qa_splits(str(gold_hub_folder), "qa", ["train"])["train"].select(range(8))
    plain = datasets.Dataset.from_dict(
        {"report_ko": ["", ""], "instruction": ["질문 하나", "질문 둘"], "answer": ["답 하나", "답 둘"]}
    )
    rows = datasets.concatenate_datasets([sample.select_columns(["report_ko", "instruction", "answer"]), plain])
    chats = group_by_report(rows, seed=0)
    assert chats[-2:] == [("", [("질문 하나", "답 하나")]), ("", [("질문 둘", "답 둘")])]
    assert len(chats) == len(set(sample["report_ko"])) + 2
    tokenizer = AutoTokenizer.from_pretrained(prepare_tiny_model())
    prepared = prepare_qa_split(rows, tokenizer, None, "drop", "train", conversations=True)
    text = tokenizer.decode(prepared[-1]["input_ids"])
    assert "질문 둘" in text and "[판독문]" not in text and PLAIN_SYSTEM_PROMPT in text


def test_jsonl_and_csv_files_convert_to_the_qa_shape(tmp_path, plain_jsonl, capsys):
    qa = to_qa_shape(read_instruction_file(plain_jsonl), {"output": "answer"}, "medical-qa.jsonl")
    assert qa.column_names == ["report_ko", "instruction", "answer"] and len(qa) == len(PLAIN_ROWS) - 1
    assert qa[1] == {
        "report_ko": "",
        "instruction": PLAIN_ROWS[1]["instruction"] + "\n\n콧물과 기침이 사흘째 있습니다.",
        "answer": "감기일 수 있습니다.",
    }
    assert "medical-qa.jsonl: dropped 1 of 12 rows with no instruction or answer." in capsys.readouterr().out

    csv_file = tmp_path / "reports.csv"  # as a spreadsheet saves it: byte order mark, a report column named otherwise
    csv_file.write_text('판독문,question,answer\n"폐는 깨끗함.",폐렴이 있나요?,"아니요, 없습니다."\n', "utf-8-sig")
    qa = to_qa_shape(read_instruction_file(csv_file), {"판독문": "report_ko", "question": "instruction"}, "csv")
    assert qa.to_list() == [
        {"report_ko": "폐는 깨끗함.", "instruction": "폐렴이 있나요?", "answer": "아니요, 없습니다."}
    ]

    numbers = tmp_path / "numbers.jsonl"  # cells that are no strings are kept as JSON text; a missing key is empty
    lines = [
        '{"instruction": "정상 체온은?", "answer": 36.5}',
        "",
        '{"instruction": "맥박은?", "answer": [60, 100], "x": null}',
    ]
    numbers.write_text("\n".join(lines) + "\n")
    assert read_instruction_file(numbers).to_dict() == {
        "instruction": ["정상 체온은?", "맥박은?"],
        "answer": ["36.5", "[60, 100]"],
        "x": ["", ""],
    }


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.xlsx", "x", r"a\.xlsx is no \.jsonl or \.csv file"),
        ("a.csv", "질문,답\n".encode("cp949"), "is not UTF-8 text. Save it as UTF-8"),
        ("a.jsonl", '{"instruction": "q", "answer": "a"}\n{"instruction": "q",\n', "a.jsonl line 2 is not JSON"),
        ("a.jsonl", "[1, 2]\n", "line 1 is not a JSON object"),
        ("a.csv", "", "has no rows"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message) as error:
        read_instruction_file(path)
    assert "\n" not in str(error.value)


def entry(**fields) -> dict:
    return {"datasets": [fields]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"datasets": []}, "dataset_mixture needs `datasets:`"),
        ({"datasets": [{"config": "qa"}]}, "dataset_mixture entry 1 has no id"),
        (entry(id="{folder}", weight=0), r"entry 1 \({folder}\) has weight 0: .* in \(0, 1\]"),
        (entry(id="{folder}", weight=1.5), r"entry 1 \({folder}\) has weight 1.5"),
        (entry(id="{folder}", weight="half"), r"has weight 'half'"),
        (entry(id="{folder}", wieght=0.5), r"entry 1 \({folder}\) has a key 'wieght'; its keys are columns, config"),
        (entry(id="{folder}", columns={"q": "question"}), r"maps a column to 'question', which is no qa column"),
        (entry(id="{folder}", columns="instruction"), "write {source column: qa column}"),
        (entry(id="{folder}/no-such.jsonl"), r"no-such\.jsonl\): no such file"),
        (entry(id="{folder}/notes.xlsx"), r"notes\.xlsx\): unknown file type '\.xlsx'. Give a \.jsonl or \.csv file"),
        (entry(id="{folder}/plain.jsonl", split="validation"), "a file has one split, 'train', not 'validation'"),
        (entry(id="{folder}/missing-folder"), r"missing-folder\) looks like a local folder but does not exist"),
        ({**entry(id="{folder}"), "test_split_size": 0.1}, "validation comes from the first entry's"),
        ({**entry(id="{folder}"), "shuffle": True}, "dataset_mixture has a key 'shuffle'"),
        ({**entry(id="{folder}"), "seed": "x"}, "dataset_mixture seed must be an integer, got 'x'"),
    ],
)
def test_a_bad_mixture_is_one_line_naming_the_entry(tmp_path, capsys, raw, message):
    (tmp_path / "notes.xlsx").write_text("x")
    (tmp_path / "plain.jsonl").write_text('{"instruction": "q", "answer": "a"}\n')
    raw = json.loads(json.dumps(raw).replace("{folder}", str(tmp_path)))
    recipe = write_recipe(tmp_path / "recipe.yaml", dataset_mixture=raw)
    assert cli(["--config", str(recipe), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(message.replace("{folder}", str(tmp_path)), err), err


def test_exactly_one_of_dataset_name_and_dataset_mixture(tmp_path, gold_hub_folder, capsys):
    recipe = write_recipe(tmp_path / "recipe.yaml", dataset_mixture=entry(id=str(gold_hub_folder)))
    assert cli(["--config", str(recipe), "--dataset_name", str(gold_hub_folder)]) == 2
    assert "Both dataset_name and dataset_mixture are set" in capsys.readouterr().err
    assert cli(["--config", str(write_recipe(tmp_path / "none.yaml"))]) == 2
    assert "or declare a dataset_mixture in the recipe" in capsys.readouterr().err
    flag = json.dumps(entry(id=str(gold_hub_folder), weight=0.5))  # on the command line, as JSON
    script_args = parse_args(["--config", str(tmp_path / "none.yaml"), "--dataset_mixture", flag])[0]
    assert script_args.dataset_mixture.datasets[0].weight == 0.5
    assert cli(["--config", str(tmp_path / "none.yaml"), "--dataset_mixture", "{datasets: []}"]) == 2
    assert "--dataset_mixture is not JSON" in capsys.readouterr().err


def test_data_errors_name_the_entry(tmp_path, gold_hub_folder, second_folder):
    no_instruction = tmp_path / "answers.jsonl"
    no_instruction.write_text('{"question": "q", "output": "a"}\n')
    cases = [
        (
            [{"id": str(gold_hub_folder)}, {"id": str(no_instruction)}],
            None,
            rf"entry 2 \({no_instruction}\) \[train\] has no column for instruction, answer \(columns: question",
        ),
        (
            [{"id": str(gold_hub_folder)}, {"id": str(no_instruction), "columns": {"q": "instruction"}}],
            None,
            r"its columns mapping names q, which it does not have",
        ),
        ([{"id": str(gold_hub_folder), "split": "dev"}], None, r"entry 1 \(.*\): Dataset .* has no split 'dev'"),
        ([{"id": str(second_folder)}], "validation", r"entry 1 \(.*other-qa\): Dataset .* has no split 'validation'"),
        (
            [{"id": str(no_instruction), "columns": {"question": "instruction", "output": "answer"}}],
            "validation",
            r"entry 1 \(.*answers.jsonl\) is a file, and validation comes from the first entry's 'validation' split",
        ),
        ([{"id": str(second_folder), "weight": 0.01}], None, r"entry 1 \(.*\): weight 0.01 draws no row of its 20"),
    ]
    for entries, test_split, message in cases:
        with contextlib.redirect_stdout(io.StringIO()), pytest.raises(ValueError, match=message) as error:
            load_mixture(parse_mixture({"datasets": entries}), "train", test_split)
        assert "\n" not in str(error.value)
