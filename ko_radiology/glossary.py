"""The English→Korean radiology glossary: which terms a report uses, and whether a translation kept them."""

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from ko_radiology.sample_corpus import SAMPLE_DIR

DEFAULT_GLOSSARY = SAMPLE_DIR / "glossary.tsv"
GLOSSARY_COLUMNS = ("english", "korean", "expansion", "category")


@dataclass(frozen=True)
class GlossaryEntry:
    english: str
    korean: str
    expansion: str
    category: str


class Glossary:
    """Terms matched case-insensitively on word boundaries; abbreviations (uppercase) match case-sensitively."""

    def __init__(self, entries: list[GlossaryEntry]):
        self.entries = {entry.english: entry for entry in entries}
        # Longest terms first, so "pleural effusion" wins over "effusion".
        terms = sorted(self.entries, key=len, reverse=True)
        words = [re.escape(term) for term in terms if not self._is_abbreviation(term)]
        abbreviations = [re.escape(term) for term in terms if self._is_abbreviation(term)]
        self._words = re.compile(r"(?<![\w/])(" + "|".join(words) + r")(?![\w/])", re.IGNORECASE)
        self._abbreviations = re.compile(r"(?<![\w/])(" + "|".join(abbreviations) + r")(?![\w/])")
        self._lowercase = {term.lower(): term for term in self.entries}

    @staticmethod
    def _is_abbreviation(term: str) -> bool:
        return any(char.isupper() for char in term) or "/" in term

    @classmethod
    def from_tsv(cls, path: Path = DEFAULT_GLOSSARY) -> "Glossary":
        with Path(path).open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            missing = set(GLOSSARY_COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"{path} lacks the columns {sorted(missing)} (has {reader.fieldnames}); "
                    f"a glossary is a TSV with the header: {' '.join(GLOSSARY_COLUMNS)}."
                )
            return cls([GlossaryEntry(**{column: row[column] or "" for column in GLOSSARY_COLUMNS}) for row in reader])

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, term: str) -> bool:
        return term in self.entries

    def terms_in(self, text: str) -> list[GlossaryEntry]:
        """Entries whose English term occurs in `text`, each once, in order of first occurrence."""
        found: dict[str, GlossaryEntry] = {}
        for match in sorted(
            [*self._words.finditer(text), *self._abbreviations.finditer(text)], key=lambda m: m.start()
        ):
            term = self._lowercase.get(match.group(1).lower())
            if term is not None:
                found.setdefault(term, self.entries[term])
        return list(found.values())
