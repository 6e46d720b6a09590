"""English report → Korean with a chat model, section by section: what the dataset builder's `llm` translator and
the Space's report translator share, so the Space reads reports the way the training data was written.

Section by section keeps the report's structure, keeps each request short, and lets a cache hit on a common section
("No acute cardiopulmonary process.") serve thousands of reports.
"""

from collections.abc import Callable

from ko_radiology.glossary import Glossary
from ko_radiology.llm import LLMRequest
from ko_radiology.sections import SECTION_NAMES

TRANSLATION_SYSTEM_PROMPT = (
    "You translate sections of English chest X-ray reports into Korean, the way Korean radiologists write reports: "
    "concise, noun-ending style (예: '우하엽에 경화 소견이 보임.', '기흉은 없음.'). "
    "Keep every number, unit, laterality (right/left/bilateral) and the placeholder ___ exactly. "
    "Keep numbered items numbered. "
    "Use the given glossary terms. Reply with the Korean translation only."
)


def present_sections(note: dict) -> dict[str, str]:
    return {name: note[name] for name in SECTION_NAMES if note.get(name)}


def translation_messages(section: str, english: str, glossary: Glossary) -> list[dict[str, str]]:
    """The glossary terms found in this section travel with it, so the model uses the project's terminology."""
    terms = "\n".join(f"- {entry.english} → {entry.korean}" for entry in glossary.terms_in(english))
    user = f"Section: {section.upper()}\nGlossary:\n{terms or '- (none)'}\n\n{english}"
    return [{"role": "system", "content": TRANSLATION_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def translate_by_section(
    notes: list[dict], translate_sections: Callable[[list[tuple[str, str]]], list[str | None]]
) -> list[dict[str, str | None]]:
    """Send every section of every note to `translate_sections` at once and regroup the Korean per note."""
    jobs = [(index, name, text) for index, note in enumerate(notes) for name, text in present_sections(note).items()]
    korean: list[dict[str, str | None]] = [{} for _ in notes]
    translated = translate_sections([(name, text) for _, name, text in jobs])
    for (index, name, _), text in zip(jobs, translated, strict=True):
        korean[index][name] = text
    return korean


class LLMTranslator:
    """One chat request per section, sent together so the client's concurrency and cache do the work.

    `complete_many` is a `ko_radiology.llm.completer.ChatCompleter` (conversations in, replies out, `.model`).
    """

    backend = "llm"

    def __init__(self, complete_many: Callable[[list[list[dict]]], list[str | None]], glossary: Glossary):
        self.complete_many = complete_many
        self.model = complete_many.model
        self.glossary = glossary

    def translate(self, notes: list[dict]) -> list[dict[str, str]]:
        return translate_by_section(notes, self._translate_sections)

    def messages(self, section: str, english: str) -> list[dict[str, str]]:
        return translation_messages(section, english, self.glossary)

    def requests(self, notes: list[dict]) -> list[LLMRequest]:
        """The chat requests `translate(notes)` would send, for a dry run or Batch API files."""
        sections = [(name, text) for note in notes for name, text in present_sections(note).items()]
        return self.complete_many.requests([self.messages(name, text) for name, text in sections])

    def _translate_sections(self, sections: list[tuple[str, str]]) -> list[str | None]:
        replies = self.complete_many([self.messages(name, text) for name, text in sections])
        return [reply.strip() if reply is not None else None for reply in replies]
