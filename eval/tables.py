"""The CSV files the runners pass along: questions → answers (`NAME_answer`) → scores (`NAME_score`).

Cells are read as text with no NaN conversion, so an empty cell is an empty answer (judged as missing, a counted
failure) rather than a float that breaks string code further on. Writes are atomic: a crash leaves the old file.
"""

from pathlib import Path

import pandas as pd

from ko_radiology.atomic_io import write_text_atomically

REPORT, QUESTION, REFERENCE, ID = "report", "question", "reference", "id"
ANSWER_SUFFIX, SCORE_SUFFIX, RATIONALE_SUFFIX, ERROR_SUFFIX = "_answer", "_score", "_rationale", "_error"
CRITERION = "criterion"


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass the CSV written by the previous step.")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a UTF-8 CSV file ({type(exc).__name__}: {exc}).") from None


def require_columns(table: pd.DataFrame, path: str | Path, columns: list[str], fix: str) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        have = ", ".join(table.columns) or "none"
        raise ValueError(f"{path} has no column {', '.join(map(repr, missing))} (columns: {have}). {fix}")


def suffixed_columns(table: pd.DataFrame, suffix: str) -> dict[str, str]:
    """`{NAME: NAME<suffix>}` for every column with that suffix, in column order."""
    return {column[: -len(suffix)]: column for column in table.columns if column.endswith(suffix) and column != suffix}


def answer_columns(table: pd.DataFrame, path: str | Path) -> dict[str, str]:
    columns = suffixed_columns(table, ANSWER_SUFFIX)
    if not columns:
        have = ", ".join(table.columns) or "none"
        raise ValueError(
            f"{path} has no NAME{ANSWER_SUFFIX} column (columns: {have}). Run `python -m eval.compare` to write "
            f"one per model, or rename each model's answer column to NAME{ANSWER_SUFFIX}."
        )
    return columns


def text_or_none(value: str) -> str | None:
    return value if value.strip() else None


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(Path(path), table.to_csv(index=False))
