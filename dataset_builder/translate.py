"""Translate notes into Korean, section by section: `gold` (the sample's), `llm` (any OpenAI-compatible endpoint, the
translator the Space shares: `ko_radiology.translation.LLMTranslator`) or `hf` (a local transformers translation model
such as NLLB or opus-mt); and the translation record each note becomes.
"""

from pathlib import Path

from dataset_builder.translation_checks import check_section
from ko_radiology.glossary import Glossary
from ko_radiology.sample_corpus import load_gold_translations
from ko_radiology.sections import join_sections
from ko_radiology.text_checks import hangul_ratio
from ko_radiology.translation import present_sections, translate_by_section

GOLD_TRANSLATOR = "gold"
"""Translator backend and generator model name recorded for hand-written records."""


def translation_record(
    note: dict, korean: dict[str, str | None], backend: str, model: str, glossary: Glossary
) -> dict:
    """`korean[name]` is None where the section's request failed: flagged `<section>:request_failed`, not checked."""
    english = present_sections(note)
    flags = [flag for name, text in english.items() for flag in _section_flags(name, text, korean, glossary)]
    report_ko = join_sections(korean, "ko")
    return {
        "study_id": note["study_id"],
        "patient_id": note["patient_id"],
        "sections": [{"name": name, "en": text, "ko": korean.get(name) or ""} for name, text in english.items()],
        "report_en": join_sections(english, "en"),
        "report_ko": report_ko,
        "translator_backend": backend,
        "translator_model": model,
        "hangul_ratio": hangul_ratio(report_ko),
        "quality_flags": flags,
    }


def lost_section_reason(record: dict) -> str | None:
    """Why a translation record's `report_ko` leaves out a section its English has (a request that failed, or an
    empty reply), or None when it is whole. QA is never generated from such a cut report."""
    if any(flag.endswith(":request_failed") for flag in record["quality_flags"]):
        return "translation_request_failed"
    if any(not section["ko"].strip() for section in record["sections"]):
        return "translation_section_empty"
    return None


def _section_flags(name: str, english: str, korean: dict[str, str | None], glossary: Glossary) -> list[str]:
    if name in korean and korean[name] is None:
        return [f"{name}:request_failed"]  # the endpoint never answered: not a translation problem
    return check_section(name, english, korean.get(name) or "", glossary)


class GoldTranslator:
    """The sample's hand-written translations; a study without one is a clear error, not a silent gap."""

    backend = model = GOLD_TRANSLATOR

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.gold = load_gold_translations(data_dir)

    def translate(self, notes: list[dict]) -> list[dict[str, str]]:
        missing = [note["study_id"] for note in notes if note["study_id"] not in self.gold]
        if missing:
            raise ValueError(f"{self.data_dir}/gold/translations.jsonl has no translation for {missing[:5]}.")
        return [self.gold[note["study_id"]] for note in notes]


class HFTranslator:
    """A local seq2seq translation model (NLLB, opus-mt, M2M100). transformers 5 has no translation pipeline, so
    this tokenizes and generates itself; NLLB-style models get the target language as the forced first token."""

    backend = "hf"

    def __init__(
        self, model: str, src_lang: str | None, tgt_lang: str | None, max_new_tokens: int, batch_size: int = 8
    ):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.model = model
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(model, **({"src_lang": src_lang} if src_lang else {}))
        self.seq2seq = AutoModelForSeq2SeqLM.from_pretrained(model).eval()
        self.generate_kwargs = (
            {"forced_bos_token_id": self.tokenizer.convert_tokens_to_ids(tgt_lang)} if tgt_lang else {}
        )

    def translate(self, notes: list[dict]) -> list[dict[str, str]]:
        return translate_by_section(notes, self._translate_sections)

    def _translate_sections(self, sections: list[tuple[str, str]]) -> list[str]:
        import torch

        texts = [text for _, text in sections]
        korean: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=512,
            )
            with torch.inference_mode():
                generated = self.seq2seq.generate(**batch, max_new_tokens=self.max_new_tokens, **self.generate_kwargs)
            korean += [text.strip() for text in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]
        return korean
