"""The builder end to end on the gold sample, the Hub folder it exports, and every kind of bad input."""

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset, load_from_disk

from dataset_builder import provenance
from dataset_builder.__main__ import main
from dataset_builder.build_dir import STAGING_MARKER
from dataset_builder.ko_cxr_qa import KoCxrQa
from dataset_builder.schemas import FEATURES
from ko_radiology.prompts import build_messages
from ko_radiology.sample_corpus import SAMPLE_DIR, load_gold_qa

GOOD_REPORT = (
    "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n \n"
    " FINDINGS: \n \n Small right pleural effusion.  No pneumothorax.\n \n IMPRESSION: \n \n Small right effusion.\n"
)


@pytest.mark.parametrize("config", ["notes", "translation", "qa"])
def test_exported_folder_loads_like_the_hub(gold_hub_folder, config):
    dataset = load_dataset(str(gold_hub_folder), config)
    assert set(dataset) == {"train", "validation", "test"}
    splits = json.loads((SAMPLE_DIR / "splits.json").read_text())
    key = "id" if config == "qa" else "study_id"
    all_ids = []
    for split, rows in dataset.items():
        assert rows.features == FEATURES[config]
        assert set(rows["study_id"]) == set(splits[split])
        all_ids += rows[key]
    assert len(all_ids) == len(set(all_ids))


def test_qa_rows_carry_the_shared_prompt_format(gold_hub_folder):
    qa = load_dataset(str(gold_hub_folder), "qa", split="train")
    row = qa[0]
    assert row["messages"] == build_messages(row["report_ko"], row["instruction"], row["answer"])
    assert row["report_ko"].startswith("검사: ") and "결론: " in row["report_ko"]
    assert set(qa["task"]) == {"질문 답변", "축약어 확장", "바꾸어 말하기", "요약"}
    assert set(qa["split"]) == {"train"} and set(qa["generator_model"]) == {"gold"}


def test_translation_rows_keep_sections_and_flag_problems(gold_hub_folder):
    translation = load_dataset(str(gold_hub_folder), "translation", split="test")
    for row in translation:
        assert [s["name"] for s in row["sections"]] and all(s["en"] and s["ko"] for s in row["sections"])
        assert row["hangul_ratio"] > 0.5 and row["translator_backend"] == "gold"


def test_sample_card_is_true_to_a_synthetic_gold_build(gold_hub_folder):
    readme = (gold_hub_folder / "README.md").read_text()
    metadata = yaml.safe_load(readme.split("---")[1])
    assert {config["config_name"] for config in metadata["configs"]} == {"notes", "translation", "qa"}
    assert metadata["license"] == "cc-by-4.0" and metadata["source_datasets"] == ["original"]
    assert not any(key.startswith("extra_gated") for key in metadata)
    assert metadata["annotations_creators"] == ["other"] and metadata["language_creators"] == ["other"]
    assert metadata["multilinguality"] == ["translation"] and metadata["task_ids"]
    assert "PhysioNet" not in readme and "Beth Israel" not in readme and "retain no data" not in readme
    assert "every report is invented" in readme and "hand-written gold translations" in readme
    assert "the fixed split listed in the input's `splits.json`" in readme
    assert "| `messages` | `list<struct<role: string, content: string>>` |" in readme
    assert "| `hangul_ratio` | `float32` |" in readme and "Value(" not in readme
    assert 'load_dataset("org/ko-cxr-qa", "qa")' in readme and "Limitations" in readme
    assert "The sample corpus's reports, gold translations and gold QA are invented" in readme
    assert "model output" not in readme and "no Korean" not in readme


def test_a_report_added_to_or_edited_in_the_sample_makes_it_credentialed(tmp_path, monkeypatch):
    """Real reports dropped into the sample folder must not pass as invented (sent anywhere, published CC BY)."""
    sample = tmp_path / "sample"
    shutil.copytree(SAMPLE_DIR, sample)
    monkeypatch.setattr(provenance, "SAMPLE_DIR", sample)  # this copy plays the shipped sample

    def provenance_of_build() -> str:
        code, out = build_notes(sample, tmp_path)
        assert code == 0
        return json.loads((out / "summary.json").read_text())["build"]["provenance"]

    assert provenance_of_build() == "synthetic"
    added = sample / "files" / "p19" / "p19000001" / "s59000001.txt"
    added.parent.mkdir(parents=True)
    added.write_text(GOOD_REPORT)
    assert provenance_of_build() == "mimic-cxr"
    added.unlink()
    edited = next((sample / "files").rglob("*.txt"))
    edited.write_text(edited.read_text() + "\n ADDENDUM: a real patient's text.\n")
    assert provenance_of_build() == "mimic-cxr"


@pytest.mark.parametrize("layout", ["mimic", "txt"])
def test_a_notes_only_card_claims_no_korean_and_no_source_it_cannot_know(tmp_path, layout):
    """English sections only: no Korean, QA or translation in the card's examples, limitations or metadata; reports
    of unknown origin (a folder of .txt) are not tagged MIMIC-CXR."""
    data = tmp_path / "reports"
    shutil.copytree(SAMPLE_DIR / "files", data / "files" if layout == "mimic" else data)
    code, out = build_notes(data, tmp_path)
    assert code == 0 and main(["export", str(out), "--out", str(tmp_path / "hub")]) == 0
    readme = (tmp_path / "hub" / "README.md").read_text()
    metadata = yaml.safe_load(readme.split("---")[1])
    assert 'load_dataset("org/ko-cxr-qa", "notes")' in readme
    assert '"qa")' not in readme and '"translation")' not in readme and "original_format" not in readme
    assert "Korean phrasing" not in readme and "three sentences" not in readme and "Hand-written Korean" not in readme
    assert "English report sections only: no Korean is part of this release." in readme
    assert (metadata["language"], metadata["multilinguality"]) == (["en"], ["monolingual"])
    assert "task_ids" not in metadata and "korean" not in metadata["tags"]
    assert ("mimic-cxr" in metadata["tags"]) == (layout == "mimic")


def test_original_format_jsonl(gold_hub_folder):
    lines = (gold_hub_folder / "original_format" / "test.jsonl").read_text().splitlines()
    test_studies = set(json.loads((SAMPLE_DIR / "splits.json").read_text())["test"])
    assert len(lines) == sum(len(rows) for study, rows in load_gold_qa(SAMPLE_DIR).items() if study in test_studies)
    assert set(json.loads(lines[0])) == {"report", "instruction", "answer"}


def test_parse_command_writes_notes(tmp_path, capsys):
    out = tmp_path / "notes.jsonl"
    assert main(["parse", str(SAMPLE_DIR), "--out", str(out)]) == 0
    notes = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(notes) == 64 and notes[0]["findings"]
    assert "64 reports" in capsys.readouterr().out


def build_notes(data, tmp_path, *extra):
    out = tmp_path / "build"
    code = main(["build", "--data-dir", str(data), "--configs", "notes", "--out", str(out), *extra])
    return code, out


def test_bad_files_are_skipped_with_reasons_and_the_rest_is_built(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "good.txt").write_text(GOOD_REPORT)
    (reports / "empty.txt").write_text("  \n")
    (reports / "binary.txt").write_bytes(b"\x89PNG\r\n\x00\x00\x00IHDR" * 10)
    (reports / "korean.txt").write_bytes(" FINDINGS: 우측 흉막삼출 소견이 보임.\n".encode("cp949"))
    (reports / "latin1.txt").write_bytes(" FINDINGS: Temperature 38.5\xb0 , effusion \xb1 2 cm.\n".encode("latin-1"))
    (reports / "nosection.txt").write_text("Lungs are clear. Heart size normal.")
    (reports / "huge.txt").write_text(GOOD_REPORT + "x" * 5_000_000)
    code, out = build_notes(reports, tmp_path)
    assert code == 0
    notes = load_dataset("arrow", data_files=str(out / "notes" / "*" / "*.arrow"), split="train")
    by_id = {row["study_id"]: row for row in notes}
    assert set(by_id) == {"good", "korean", "latin1", "nosection"}
    assert (
        by_id["korean"]["findings"] == "우측 흉막삼출 소견이 보임."
        and "encoding:cp949" in by_id["korean"]["parse_flags"]
    )
    assert "38.5°" in by_id["latin1"]["findings"] and "encoding:latin-1" in by_id["latin1"]["parse_flags"]
    assert "no_sections_found" in by_id["nosection"]["parse_flags"]
    summary = json.loads((out / "summary.json").read_text())
    skipped = {item["source"].split("/")[-1]: item["reason"] for item in summary["skipped"]}
    assert skipped["empty.txt"] == "empty file"
    assert skipped["binary.txt"].startswith("binary file")
    assert skipped["huge.txt"].startswith("oversized")
    skip_counts = {key: n for key, n in summary["counts"].items() if key.startswith("skipped:")}
    assert skip_counts == {"skipped:empty_file": 1, "skipped:binary_file": 1, "skipped:oversized": 1}
    assert summary["build"]["provenance"] == "user" and summary["build"]["split_source"] == "hash"


def report_tree(root, layout):
    """A folder of reports in `layout` ("txt": a plain folder; "mimic": files/pNN/pNNNNNNNN/sNNNNNNNN.txt) with two
    good reports; returns the folder to pass as --data-dir and a function giving the path of report `n`."""
    folder = root / "files" / "p10" / "p10000001" if layout == "mimic" else root
    folder.mkdir(parents=True, exist_ok=True)

    def path(n):
        return folder / (f"s1000000{n}.txt" if layout == "mimic" else f"report{n}.txt")

    path(1).write_text(GOOD_REPORT)
    path(2).write_text(GOOD_REPORT.replace("Small right", "Large left"))
    return root, path


@pytest.mark.parametrize("layout", ["txt", "mimic"])
def test_paths_named_like_reports_that_are_none_are_counted_skips(tmp_path, capsys, layout):
    """A folder, a broken link and a FIFO named `*.txt` (a FIFO would block the build forever if opened)."""
    data, path = report_tree(tmp_path / "reports", layout)
    path(3).mkdir()
    path(4).symlink_to(tmp_path / "gone.txt")
    os.mkfifo(path(5))
    code, out = build_notes(data, tmp_path)
    printed = capsys.readouterr()
    assert code == 0 and "Traceback" not in printed.err
    notes = load_from_disk(str(out / "notes"))
    assert sum(notes.num_rows.values()) == 2
    summary = json.loads((out / "summary.json").read_text())
    skipped = {item["source"]: (item["kind"], item["reason"]) for item in summary["skipped"]}
    assert skipped == {
        str(path(3)): ("folder", "a folder, not a report file"),
        str(path(4)): ("broken_link", f"broken symlink (to {tmp_path / 'gone.txt'})"),
        str(path(5)): ("special_file", "not a regular file (a FIFO, socket or device)"),
    }
    assert {summary["counts"][f"skipped:{kind}"] for kind, _ in skipped.values()} == {1}
    for source, (_, reason) in skipped.items():
        assert f"skipped {source}: {reason}" in printed.out


def as_a_user_permissions_apply_to(command):
    """Root reads a chmod-000 file anyway: as root, run `command` as nobody (65534)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: no user here for whom a file can be unreadable")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]


@pytest.mark.parametrize("layout", ["txt", "mimic"])
def test_an_unreadable_report_or_folder_is_a_counted_skip(layout):
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as scratch:  # tmp_path is closed to other users
        root = Path(scratch)
        data, path = report_tree(root / "reports", layout)
        path(3).write_text(GOOD_REPORT)
        path(3).chmod(0)
        locked = path(1).parent / "p10000002" if layout == "mimic" else path(1).parent / "locked"
        locked.mkdir()
        (locked / "s10000009.txt").write_text(GOOD_REPORT)
        locked.chmod(0)
        out = root / "out"
        out.mkdir()
        for folder in (root, *[folder for folder in path(1).parents if root in folder.parents]):
            folder.chmod(0o755)
        out.chmod(0o777)
        command = [sys.executable, "-m", "dataset_builder", "build", "--data-dir", str(data), "--out", str(out)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HOME": scratch}
        result = subprocess.run(
            as_a_user_permissions_apply_to([*command, "--configs", "notes"]), capture_output=True, text=True, env=env
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert sum(load_from_disk(str(out / "notes")).num_rows.values()) == 2
        skipped = {item["source"]: (item["kind"], item["reason"]) for item in summary["skipped"]}
        assert skipped == {
            str(path(3)): ("unreadable", "cannot be read (Permission denied)"),
            str(locked): ("unreadable_folder", "folder cannot be listed (Permission denied)"),
        }
        assert f"skipped {path(3)}: cannot be read (Permission denied)" in result.stdout


def test_a_csv_that_cannot_be_read_is_one_line(tmp_path, capsys):
    notes = tmp_path / "notes.csv"
    notes.mkdir()  # unreadable as a file, for root too
    args = ["--input-format", "csv", "--configs", "notes", "--out", str(tmp_path / "out")]
    assert main(["build", "--data-dir", str(notes), *args]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {notes} cannot be read (Is a directory); pass a CSV file you can read as --data-dir."
    ]


def test_rebuilding_into_the_same_out_after_adding_reports(tmp_path):
    """A build folder is rebuilt from scratch each time: nothing stale (no `datasets` cache) survives in it."""
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "good.txt").write_text(GOOD_REPORT)
    code, out = build_notes(reports, tmp_path)
    assert code == 0
    (reports / "latin1.txt").write_bytes(" FINDINGS: Temperature 38.5\xb0 , effusion.\n".encode("latin-1"))
    (reports / "nosection.txt").write_text("Lungs are clear. Heart size normal.")
    (reports / "second.txt").write_text(GOOD_REPORT.replace("Small right", "Large left"))
    code, out = build_notes(reports, tmp_path)
    assert code == 0
    notes = load_from_disk(str(out / "notes"))
    assert sorted(id for split in notes.values() for id in split["study_id"]) == [
        "good", "latin1", "nosection", "second"
    ]  # fmt: skip
    assert sorted(path.name for path in out.iterdir()) == [".build.lock", "notes", "summary.json"]
    (reports / "second.txt").unlink()
    assert build_notes(reports, tmp_path)[0] == 0
    assert sum(load_from_disk(str(out / "notes")).num_rows.values()) == 3


def test_reports_without_sections_are_counted_once_whatever_the_configs(tmp_path):
    data = tmp_path / "sample-copy"
    shutil.copytree(SAMPLE_DIR, data)
    (data / "files" / "p10" / "p10000101" / "s59999999.txt").write_text("FINAL REPORT\nLungs are clear.\n")
    out = tmp_path / "out"
    assert main(["build", "--data-dir", str(data), "--gold", "--configs", "translation,qa", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["not_translated:no_sections_found"] == 1
    assert summary["build"]["provenance"] == "mimic-cxr"  # a copy of the sample with a report added


def test_the_datasets_builder_builds_the_gold_sample(tmp_path):
    builder = KoCxrQa(config_name="translation", data_dir=str(SAMPLE_DIR), cache_dir=str(tmp_path))
    builder.download_and_prepare()
    translation = builder.as_dataset()
    splits = json.loads((SAMPLE_DIR / "splits.json").read_text())
    assert {split: set(rows["study_id"]) for split, rows in translation.items()} == {
        split: set(studies) for split, studies in splits.items()
    }
    assert translation["test"].features == FEATURES["translation"]


def write_csv(path, header, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_csv_without_the_expected_column_names_the_fix(tmp_path, capsys):
    notes = tmp_path / "notes.csv"
    write_csv(notes, ["id", "text"], [["1", GOOD_REPORT]])
    code, out = build_notes(notes, tmp_path)
    assert code == 2
    assert 'notes.csv has no column "note" (columns: id, text). Pass --text-column with the right name.' in (
        capsys.readouterr().err
    )
    assert (
        main(["build", "--data-dir", str(notes), "--configs", "notes", "--out", str(out), "--text-column", "text"])
        == 0
    )


def test_csv_duplicate_ids_keep_the_first_and_say_so(tmp_path):
    notes = tmp_path / "notes.csv"
    write_csv(notes, ["id", "note"], [["7", GOOD_REPORT], ["7", "IMPRESSION: other"], ["8", GOOD_REPORT], ["9", ""]])
    code, out = build_notes(notes, tmp_path)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    reasons = [item["reason"] for item in summary["skipped"]]
    assert reasons == ["duplicate id '7' (first occurrence kept)", "empty note"]


def test_a_failed_build_keeps_the_finished_one(tmp_path):
    code, out = build_notes(SAMPLE_DIR, tmp_path)
    assert code == 0
    before = sorted(p.name for p in (out / "notes").rglob("*"))
    assert main(["build", "--data-dir", str(tmp_path / "missing"), "--configs", "notes", "--out", str(out)]) == 2
    assert sorted(p.name for p in (out / "notes").rglob("*")) == before


def test_an_out_folder_with_things_no_build_wrote_is_refused_and_kept(tmp_path, capsys):
    """`--out ~` with a `notes/` of one's own: the swap would have moved it aside and deleted it."""
    out = tmp_path / "home"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "todo.txt").write_text("mine")
    (out / "summary.json").write_text('{"quarter": 3}')
    assert main(["build", "--data-dir", str(SAMPLE_DIR), "--gold", "--configs", "notes", "--out", str(out)]) == 2
    assert "holds notes, summary.json, which no build wrote" in capsys.readouterr().err
    assert (out / "notes" / "todo.txt").read_text() == "mine"
    assert (out / "summary.json").read_text() == '{"quarter": 3}'
    assert sorted(path.name for path in out.iterdir()) == ["notes", "summary.json"]


def test_a_build_removes_only_the_staging_folders_a_build_made(tmp_path):
    """`.staging-*` is only a name: a user's folder of that name survives; a killed build's (marked) is removed."""
    out = tmp_path / "build"  # where build_notes builds
    (out / ".staging-mine").mkdir(parents=True)
    (out / ".staging-mine" / "notes.txt").write_text("mine")
    assert build_notes(SAMPLE_DIR, tmp_path)[0] == 0
    killed = out / ".staging-killed"
    (killed / "notes").mkdir(parents=True)
    (killed / STAGING_MARKER).touch()  # what a build killed before its swap leaves
    assert build_notes(SAMPLE_DIR, tmp_path)[0] == 0
    assert (out / ".staging-mine" / "notes.txt").read_text() == "mine" and not killed.exists()
    assert sorted(path.name for path in out.iterdir()) == [".build.lock", ".staging-mine", "notes", "summary.json"]


def one_error_line(capsys) -> str:
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err and len(printed.err.splitlines()) == 1, printed.err
    return printed.err


@pytest.mark.parametrize("out", ["a_file", "a_file/out", "/proc/ko-cxr-build"])
def test_an_out_that_is_no_writable_folder_is_one_line(tmp_path, capsys, out):
    """A file, a path under a file, a folder no one (root included) may create: named, and nothing touched."""
    (tmp_path / "a_file").write_text("mine")
    out = tmp_path / out
    assert main(["build", "--data-dir", str(SAMPLE_DIR), "--gold", "--configs", "notes", "--out", str(out)]) == 2
    assert one_error_line(capsys).startswith(f"error: --out {out} ")
    assert (tmp_path / "a_file").read_text() == "mine" and sorted(tmp_path.iterdir()) == [tmp_path / "a_file"]


def test_export_into_a_symlink_is_one_line_and_replaces_nothing(tmp_path, capsys):
    code, build = build_notes(SAMPLE_DIR, tmp_path)
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "notes.md").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "hub")
    assert code == 0 and main(["export", str(build), "--out", str(tmp_path / "link")]) == 2
    assert f"pass the folder itself ({tmp_path / 'hub'}) or a new one" in one_error_line(capsys)
    assert (tmp_path / "link").is_symlink() and (tmp_path / "hub" / "notes.md").read_text() == "mine"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["build", "hub", "link"]


def test_push_dry_run_of_a_card_with_broken_front_matter_is_one_line(gold_hub_folder, tmp_path, capsys):
    folder = tmp_path / "hub"
    shutil.copytree(gold_hub_folder, folder)
    readme = folder / "README.md"
    readme.write_text(readme.read_text().replace("pretty_name: Ko-CXR-QA", "pretty_name: [Ko-CXR-QA", 1))
    assert main(["push", str(folder), "--repo-id", "org/ko-cxr-qa", "--dry-run"]) == 2
    assert f"error: {readme}'s front matter is not valid YAML (line 3:" in one_error_line(capsys)
    assert capsys.readouterr().out == ""


def test_export_never_replaces_a_folder_it_did_not_write(tmp_path, capsys):
    """Export swaps its folder whole: `--out ~` or `--out` the build itself (its paid LLM cache) must be refused."""
    code, build = build_notes(SAMPLE_DIR, tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    assert code == 0 and main(["export", str(build), "--out", str(home)]) == 2
    assert "holds thesis.tex, which export did not write" in capsys.readouterr().err
    assert (home / "thesis.tex").read_text() == "years of work"
    (home / "thesis.tex").unlink()
    (home / "README.md").write_text("my notes")  # a name export writes, in a folder export did not write
    assert main(["export", str(build), "--out", str(home)]) == 2
    assert "holds README.md, which export did not write" in capsys.readouterr().err
    assert (home / "README.md").read_text() == "my notes"
    assert main(["export", str(build), "--out", str(build)]) == 2
    assert (build / "summary.json").is_file() and (build / "notes" / "dataset_dict.json").is_file()
    for _ in range(2):  # an earlier export is replaced
        assert main(["export", str(build), "--out", str(tmp_path / "hub")]) == 0


@pytest.mark.parametrize("backend", [["--gold"], ["--model", "m"]])
def test_a_mistyped_data_dir_is_named_before_anything_is_created(tmp_path, capsys, backend):
    """Not "--gold needs .../gold/translations.jsonl", and no empty cache left in OUT by the llm backend."""
    out = tmp_path / "out"
    assert main(["build", "--data-dir", str(tmp_path / "smaple"), "--out", str(out), *backend]) == 2
    assert f"{tmp_path / 'smaple'} does not exist" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--configs", "notes,answers"], "--configs has unknown ['answers']"),
        (["--task-weights", "1,1"], "--task-weights '1,1' needs 4 non-negative numbers"),
        (["--limit", "0"], "--limit must be >= 1, got 0"),  # not "No usable report (no .txt files)"
        (["--encoding", "utf9"], "--encoding 'utf9' is not an encoding Python knows"),  # not a LookupError traceback
        (["--configs", "translation"], "needs --model"),
        (["--translator", "hf"], "--translator hf needs --hf-translation-model"),
    ],
)
def test_bad_options_say_what_to_do(tmp_path, capsys, args, message):
    assert main(["build", "--data-dir", str(SAMPLE_DIR), "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_gold_needs_the_gold_files(tmp_path, capsys):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "a.txt").write_text(GOOD_REPORT)
    assert main(["build", "--data-dir", str(reports), "--gold", "--out", str(tmp_path / "out")]) == 2
    assert "--gold needs" in capsys.readouterr().err


def test_yaml_config_with_flag_override(tmp_path, capsys):
    config = tmp_path / "build.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(SAMPLE_DIR), "configs": "notes,qa", "gold": True, "limit": 3}))
    out = tmp_path / "out"
    assert main(["build", "--config", str(config), "--out", str(out), "--configs", "notes"]) == 0
    assert (out / "notes").is_dir() and not (out / "qa").exists()
    config.write_text(yaml.safe_dump({"data_dir": str(SAMPLE_DIR), "colour": "red"}))
    capsys.readouterr()
    assert main(["build", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--config {config} has a key 'colour'" in err and len(err.splitlines()) == 1, err
    config.write_text(yaml.safe_dump({"data_dir": str(SAMPLE_DIR), "gold": True, "configs": "notes", "limit": 0}))
    assert main(["build", "--config", str(config), "--out", str(out), "--limit", "1"]) == 0, "the flag wins"
    config.write_text("data_dir: [unclosed\n")
    assert main(["build", "--config", str(config), "--out", str(out)]) == 2
    assert f"--config {config} is not valid YAML" in capsys.readouterr().err
