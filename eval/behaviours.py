"""What a user notices first, scored per behaviour: does a yes/no answer start with the right 네/아니요, is an
unanswerable question declined and an answerable one not, is an abbreviation expanded as the glossary does?

    labels = gold_labels(rows)       # the split's question types, tasks and abbreviations
    behaviours(tuned_texts, base_texts, labels, Glossary.from_tsv())
    # {"yes_no_questions": 40, "yes_no_accuracy": 0.75, "yes_no_accuracy_ci95": [0.6, 0.86], "base_yes_no_...}

The answers are read with the gold answers' own rules (`ko_radiology.answer_kinds`). Each share comes with a 95% Wilson
score interval (`ko_radiology.statistics.wilson_interval`): the targets sit near 0 and 1, where a bootstrap of 0/1
outcomes collapses to a point. Abbreviation pairs of one row are counted as independent outcomes.

A split without the `question_type` column (an older export, another qa-shaped folder) has its types read off the
gold answers (`ko_radiology.answer_kinds.question_type`, with `answerable` where the split has it); one without
`expanded_abbreviations` has no abbreviation accuracy (None), not a guess.
"""

import unicodedata
from dataclasses import dataclass

import datasets

from ko_radiology.answer_kinds import QUESTION_TYPES, declines, question_type, yes_no_word
from ko_radiology.glossary import Glossary, GlossaryEntry
from ko_radiology.statistics import wilson_interval

COUNTS = {
    "yes_no_accuracy": "yes_no_questions",
    "unanswerable_declined": "unanswerable_questions",
    "answerable_declined": "answerable_questions",
    "abbreviation_accuracy": "abbreviation_pairs",
}
"""Each behaviour's share, by its name in `quality.json`, and what it is a share of, by the name of its count."""
IGNORED_IN_TERMS = str.maketrans("", "", "-\u2010\u2011\u2012\u2013\u2014")
"""Hyphens and dashes: "ground-glass opacity" and "ground glass opacity" are one expansion."""


@dataclass(frozen=True)
class GoldLabels:
    """What the split says of each question besides its gold answer.

    Args:
        answers: The gold answers.
        question_types: `yes_no`, `open` or `unanswerable`, one per row.
        types_from_gold_answers: Rows whose type was read off the gold answer (no `question_type` value).
        tasks: The `task` of each row; None when the split has no such column.
        abbreviations: The abbreviations each row's gold answer expands; None when the split has no
            `expanded_abbreviations` column.
    """

    answers: list[str]
    question_types: list[str]
    types_from_gold_answers: int
    tasks: list[str] | None
    abbreviations: list[list[str]] | None


def gold_labels(rows: datasets.Dataset, label: str = "the split") -> GoldLabels:
    """The labels of `rows` (a qa split), from its columns where it has them, else from its gold answers."""
    answers = list(rows["answer"])
    columns = set(rows.column_names)
    given = rows["question_type"] if "question_type" in columns else [None] * len(answers)
    answerable = rows["answerable"] if "answerable" in columns else [not declines(answer) for answer in answers]
    types = []
    for index, (kind, can_answer, answer) in enumerate(zip(given, answerable, answers, strict=True)):
        if kind is not None and kind not in QUESTION_TYPES:
            raise ValueError(
                f"{label} row {index} has question_type {kind!r}; it must be one of {', '.join(QUESTION_TYPES)}."
            )
        types.append(kind or question_type(can_answer, answer))
    return GoldLabels(
        answers=answers,
        question_types=types,
        types_from_gold_answers=sum(kind is None for kind in given),
        tasks=list(rows["task"]) if "task" in columns else None,
        abbreviations=(
            [list(names or []) for names in rows["expanded_abbreviations"]]
            if "expanded_abbreviations" in columns
            else None
        ),
    )


def yes_no_correct(answer: str, gold: str) -> bool:
    """Whether the answer starts with the gold's 네 or 아니요; starting with neither is wrong too."""
    expected = yes_no_word(gold)
    return expected is not None and yes_no_word(answer) == expected


def folded(text: str) -> str:
    """`text` as terms are compared: NFC, case-folded, without spaces, hyphens or dashes (컴퓨터 단층촬영 is
    컴퓨터단층촬영, Ground-glass is groundglass)."""
    normal = unicodedata.normalize("NFC", text).casefold().translate(IGNORED_IN_TERMS)
    return "".join(normal.split())


def expands(answer: str, entry: GlossaryEntry) -> bool:
    """Whether the answer gives the abbreviation's English expansion or its Korean term, as the glossary writes them.

    The Korean term counts anywhere in the answer, so one the answer uses for another reason also counts.
    """
    text = folded(answer)
    return any(term and folded(term) in text for term in (entry.expansion, entry.korean))


def abbreviation_hits(answer: str, abbreviations: list[str], glossary: Glossary) -> list[bool]:
    """One outcome per abbreviation the glossary expands; one it does not expand cannot be scored and is skipped."""
    entries = [glossary.entries.get(name) for name in abbreviations]
    return [expands(answer, entry) for entry in entries if entry is not None and entry.expansion]


def unscorable_abbreviations(labels: GoldLabels, glossary: Glossary) -> list[str]:
    """The abbreviations the split names that the glossary has no expansion for (not scored)."""
    names = {name for row in labels.abbreviations or [] for name in row}
    return sorted(name for name in names if name not in glossary or not glossary.entries[name].expansion)


def behaviour_outcomes(answers: list[str], labels: GoldLabels, glossary: Glossary) -> dict[str, list[bool] | None]:
    """Per behaviour, one outcome per question (per row and abbreviation for abbreviations); None: not measured."""
    rows = list(zip(answers, labels.answers, labels.question_types, strict=True))
    outcomes = {
        "yes_no_accuracy": [yes_no_correct(answer, gold) for answer, gold, kind in rows if kind == "yes_no"],
        "unanswerable_declined": [declines(answer) for answer, _, kind in rows if kind == "unanswerable"],
        "answerable_declined": [declines(answer) for answer, _, kind in rows if kind != "unanswerable"],
        "abbreviation_accuracy": None,
    }
    if labels.abbreviations is not None:
        outcomes["abbreviation_accuracy"] = [
            hit
            for answer, names in zip(answers, labels.abbreviations, strict=True)
            for hit in abbreviation_hits(answer, names, glossary)
        ]
    return outcomes


def share(outcomes: list[bool] | None) -> tuple[float | None, list[float] | None]:
    """The share of true outcomes and its 95% Wilson interval; (None, None) when there is nothing to measure."""
    if not outcomes:
        return None, None
    estimate, low, high = wilson_interval(sum(outcomes), len(outcomes))
    return estimate, [low, high]


def behaviours(tuned: list[str], base: list[str], labels: GoldLabels, glossary: Glossary) -> dict:
    """Per behaviour, as `quality.json` holds it: what it is measured over (`yes_no_questions`, ...; None when not
    measured), then the model's share and the base's, each with `_ci95`."""
    outcomes = {"": behaviour_outcomes(tuned, labels, glossary), "base_": behaviour_outcomes(base, labels, glossary)}
    result = {}
    for name, count in COUNTS.items():
        measured = outcomes[""][name]
        result[count] = None if measured is None else len(measured)
        for prefix, by_behaviour in outcomes.items():
            result[f"{prefix}{name}"], result[f"{prefix}{name}_ci95"] = share(by_behaviour[name])
    result["abbreviations_not_scored"] = unscorable_abbreviations(labels, glossary)
    result["question_types_from_gold_answers"] = labels.types_from_gold_answers
    return result
