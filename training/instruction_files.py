"""Plain instruction/answer data (a JSONL or CSV file, or any dataset split) converted into the `qa` shape.

Korean medical instruction corpora (the AI Hub ones the original project mixed into training, or the export's own
`original_format/*.jsonl`) come as rows of `instruction`/`input`/`output`, `question`/`answer` or `report`/
`instruction`/`answer`. A `columns` mapping (`{question: instruction, output: answer}`) names which column is which;
a column already named as a `qa` column needs no entry. A row without a report gets an empty `report_ko`, which
`ko_radiology.prompts.build_messages` turns into a plain instruction chat.
"""

import csv
import json
from collections.abc import Mapping
from pathlib import Path

from datasets import Dataset

from ko_radiology.dataset_folders import QA_COLUMNS

FILE_TYPES = (".jsonl", ".csv")
REQUIRED = ("instruction", "answer")
OPTIONAL = ("report_ko", "input")
"""`input` is the Alpaca-style context of an instruction: it is appended to the instruction after a blank line."""
TARGETS = (*REQUIRED, *OPTIONAL)


def as_text(value) -> str:
    """A cell as text: a missing one is empty, a number or a list is written as JSON writes it."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path} line {number} is not JSON ({error.msg}). Write one JSON object a line."
                ) from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {number} is not a JSON object. Write one object a line.")
            rows.append(row)
    return rows


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8-sig", newline="") as lines:  # -sig: a spreadsheet's byte order mark
        return list(csv.DictReader(lines))


def read_instruction_file(path: str | Path) -> Dataset:
    """Every row of a JSONL or CSV file, every cell as text (a column a row lacks is empty there).

    Raises:
        ValueError: The file type is neither, the file is not UTF-8, a JSONL line is no JSON object, or it has no row.
    """
    path = Path(path)
    if path.suffix.lower() not in FILE_TYPES:
        raise ValueError(f"{path} is no {' or '.join(FILE_TYPES)} file. Convert it to JSONL or CSV (UTF-8).")
    try:
        rows = read_jsonl(path) if path.suffix.lower() == ".jsonl" else read_csv(path)
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text. Save it as UTF-8 (e.g. from cp949).") from None
    if not rows:
        raise ValueError(f"{path} has no rows.")
    columns = list(dict.fromkeys(name for row in rows for name in row))
    return Dataset.from_dict({name: [as_text(row.get(name)) for row in rows] for name in columns})


def column_sources(available: list[str], columns: Mapping[str, str] | None, label: str) -> dict[str, str]:
    """Which source column each `qa` column comes from: the mapping's, else the column of the same name.

    Raises:
        ValueError: The mapping names a column the data lack, or `instruction` or `answer` has no source.
    """
    columns = dict(columns or {})
    absent = [source for source in columns if source not in available]
    if absent:
        raise ValueError(
            f"{label}: its columns mapping names {', '.join(absent)}, which it does not have "
            f"(columns: {', '.join(available)})."
        )
    sources = {target: source for source, target in columns.items()}
    sources.update({target: target for target in TARGETS if target not in sources and target in available})
    missing = [target for target in REQUIRED if target not in sources]
    if missing:
        raise ValueError(
            f"{label} has no column for {', '.join(missing)} (columns: {', '.join(available)}). Map one in its "
            f"columns, e.g. columns: {{{available[0]}: {missing[0]}}}."
        )
    return sources


def to_qa_shape(rows: Dataset, columns: Mapping[str, str] | None, label: str) -> Dataset:
    """`rows` as the `qa` columns the prompt is built from (`QA_COLUMNS`) and nothing else; rows with an empty
    instruction or answer are dropped, with a printed count (they teach nothing).

    Raises:
        ValueError: A column is missing (`column_sources`), or no row has both an instruction and an answer.
    """
    sources = column_sources(rows.column_names, columns, label)

    def convert(row: dict) -> dict:
        text = {target: (row[source] or "").strip() for target, source in sources.items()}
        instruction, context = text["instruction"], text.get("input", "")
        return {
            "report_ko": text.get("report_ko", ""),
            "instruction": f"{instruction}\n\n{context}" if instruction and context else instruction,
            "answer": text["answer"],
        }

    converted = rows.map(convert, remove_columns=rows.column_names, desc=f"Converting {label}")
    kept = converted.filter(lambda row: bool(row["instruction"] and row["answer"]))
    if len(kept) < len(converted):
        print(f"{label}: dropped {len(converted) - len(kept)} of {len(converted)} rows with no instruction or answer.")
    if len(kept) == 0:
        raise ValueError(f"{label} has no row with both an instruction and an answer.")
    return kept.select_columns(list(QA_COLUMNS))
