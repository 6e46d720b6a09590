"""Read raw reports from what users bring: the MIMIC-CXR reports tree, the original project's `{id, note}` CSV, or a
folder of `.txt` files. Nothing is downloaded.

Expected MIMIC-CXR layout (`--data-dir` points at the folder holding `files/`)::

    mimic-cxr-reports/
    ├── files/p10/p10000032/s50414267.txt
    ├── files/p10/p10000032/s53189527.txt
    └── mimic-cxr-2.0.0-split.csv.gz      (optional: the official split; otherwise a hash of the patient id)

A file that cannot be used (empty, binary, oversized, a duplicate id, unreadable, a folder or broken link named
`*.txt`) and a folder that cannot be listed are skipped with a named reason, never fatal: on 227,000 reports one bad
file must not cost the rest.
"""

import csv
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ko_radiology.text_checks import is_hangul

MIMIC_REPORT_PATH = re.compile(r"p(\d{2})/(p\d{8})/(s\d{8})\.txt$")
FALLBACK_ENCODINGS = ("cp949", "latin-1")
"""Tried in order after UTF-8: Korean Windows exports come as cp949, older US exports as latin-1."""


class InputError(ValueError):
    """Input the builder cannot use at all (missing folder, CSV without the needed columns)."""


@dataclass
class RawReport:
    study_id: str
    patient_id: str
    source_path: str
    text: str
    flags: list[str] = field(default_factory=list)


@dataclass
class SkippedInput:
    """`kind` is the short name the summary counts (`skipped:<kind>`); `reason` says it in words."""

    source: str
    kind: str
    reason: str


@dataclass
class ReportSource:
    """Where reports come from and how to read them; `read()` yields usable reports and records skipped ones."""

    path: Path
    input_format: str = "auto"
    id_column: str = "id"
    text_column: str = "note"
    patient_column: str | None = None
    encoding: str | None = None
    max_report_chars: int = 20_000
    skipped: list[SkippedInput] = field(default_factory=list)

    def __post_init__(self) -> None:
        """A mistyped path fails here, before a build creates its cache or blames a missing gold file."""
        if not self.path.exists():
            raise InputError(f"{self.path} does not exist. Pass --data-dir with your reports (see `--help`).")

    @property
    def data_dir(self) -> Path:
        """The folder holding the reports and their split files (the folder beside a CSV)."""
        return self.path if self.path.is_dir() else self.path.parent

    def resolved_format(self) -> str:
        if self.input_format != "auto":
            return self.input_format
        if self.path.is_file() and self.path.suffix.lower() == ".csv":
            return "csv"
        if (self.path / "files").is_dir():
            return "mimic"
        return "txt"

    def read(self) -> Iterator[RawReport]:
        seen: set[str] = set()
        reader = self._read_csv() if self.resolved_format() == "csv" else self._read_files()
        for report in reader:
            source = report.source_path
            if report.study_id in seen:
                self.skip(source, "duplicate_id", f"duplicate id {report.study_id!r} (first occurrence kept)")
            elif len(report.text) > self.max_report_chars:
                self.skip(source, "oversized", f"oversized: {len(report.text):,} chars > --max-report-chars")
            else:
                seen.add(report.study_id)
                yield report

    def skip(self, source: str, kind: str, reason: str) -> None:
        self.skipped.append(SkippedInput(source, kind, reason))

    def _read_files(self) -> Iterator[RawReport]:
        root = self.path / "files" if self.resolved_format() == "mimic" else self.path
        if not root.is_dir():
            raise InputError(f"{root} is not a folder of reports (expected files/pNN/pNNNNNNNN/sNNNNNNNN.txt).")
        for path in self._report_paths(root):
            data = self._read_report_file(path)
            decoded = None if data is None else self._decode(data, str(path))
            if decoded is None:
                continue
            text, flags = decoded
            match = MIMIC_REPORT_PATH.search(path.as_posix())
            study_id, patient_id = (match.group(3), match.group(2)) if match else (path.stem, "")
            yield RawReport(study_id, patient_id, str(path.relative_to(self.path)), text, flags)

    def _report_paths(self, root: Path) -> list[Path]:
        """Every path named `*.txt` under `root`, sorted (whatever it is: `_read_report_file` tells); a folder that
        cannot be listed is recorded as skipped instead of silently losing the reports inside it."""

        def unlistable(error: OSError) -> None:
            self.skip(str(error.filename), "unreadable_folder", f"folder cannot be listed ({error.strerror})")

        found = []
        for folder, folders, files in os.walk(root, onerror=unlistable):
            found += [Path(folder, name) for name in folders + files if name.endswith(".txt")]
        return sorted(found)

    def _read_report_file(self, path: Path) -> bytes | None:
        """The bytes of one report, or None (recorded as skipped) for a path named `*.txt` that is no regular file
        or cannot be read: never opened when it is a FIFO or device, which would block or never end."""
        try:
            if path.is_file():
                return path.read_bytes()
            if path.is_symlink() and not path.exists():
                kind, reason = "broken_link", f"broken symlink (to {os.readlink(path)})"
            elif path.is_dir():
                kind, reason = "folder", "a folder, not a report file"
            else:
                kind, reason = "special_file", "not a regular file (a FIFO, socket or device)"
        except OSError as error:
            kind, reason = "unreadable", f"cannot be read ({error.strerror})"
        self.skip(str(path), kind, reason)
        return None

    def _read_csv(self) -> Iterator[RawReport]:
        csv.field_size_limit(sys.maxsize)  # MIMIC notes in one CSV cell can exceed the 128 KiB default
        try:
            raw = self.path.read_bytes()
        except OSError as error:
            raise InputError(
                f"{self.path} cannot be read ({error.strerror}); pass a CSV file you can read as --data-dir."
            ) from None
        decoded = self._decode(raw, str(self.path))
        if decoded is None:
            raise InputError(
                f"{self.path} is empty or binary; expected a CSV with columns {self.id_column!r}, "
                f"{self.text_column!r}."
            )
        rows = csv.DictReader(decoded[0].splitlines(keepends=True))
        self._check_columns(rows.fieldnames or [])
        for line_number, row in enumerate(rows, start=2):
            source = f"{self.path.name}:{line_number}"
            text = (row[self.text_column] or "").strip()
            if not text:
                self.skip(source, "empty_note", "empty note")
                continue
            patient_id = row[self.patient_column] if self.patient_column else ""
            yield RawReport(str(row[self.id_column]).strip(), patient_id, source, text, list(decoded[1]))

    def _check_columns(self, columns: list[str]) -> None:
        wanted = {"--id-column": self.id_column, "--text-column": self.text_column}
        if self.patient_column:
            wanted["--patient-column"] = self.patient_column
        for flag, column in wanted.items():
            if column not in columns:
                raise InputError(
                    f'{self.path.name} has no column "{column}" (columns: {", ".join(columns)}). '
                    f"Pass {flag} with the right name."
                )

    def _decode(self, data: bytes, source: str) -> tuple[str, list[str]] | None:
        """Text and encoding flags, or None (recorded as skipped) for empty or binary input."""
        if not data.strip():
            self.skip(source, "empty_file", "empty file")
            return None
        if b"\x00" in data[:4096]:
            self.skip(source, "binary_file", "binary file (NUL bytes), not a text report")
            return None
        encodings = (self.encoding,) if self.encoding else ("utf-8-sig", *FALLBACK_ENCODINGS)
        for encoding in encodings:
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                continue
            if encoding == "cp949" and not self.encoding and not _non_ascii_is_hangul(text):
                continue  # latin-1 bytes that happen to pair up as cp949 decode to stray syllables and hanja
            return text, ([] if encoding == "utf-8-sig" else [f"encoding:{encoding}"])
        self.skip(source, "undecodable", f"cannot be decoded as {self.encoding}; pass the file's --encoding")
        return None


def _non_ascii_is_hangul(text: str, share: float = 0.8) -> bool:
    non_ascii = [char for char in text if ord(char) > 127]
    return sum(is_hangul(char) for char in non_ascii) >= share * len(non_ascii)
