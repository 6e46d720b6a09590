"""Korean instruction/answer pairs for translated reports: `gold` (the sample's) or `llm`, the original project's two
stages done right.

Stage 1 asks for one instruction per sampled task type, shown few-shot examples of that type plus questions already
accepted in this run (Asclepius-style bootstrapping, so instructions diversify as the pool grows). Stage 2 answers
each instruction with that task's own prompt. Every rejected candidate is counted under a named reason.
The pool is updated between fixed-size chunks, and all sampling is seeded per study, so a re-run sends exactly the
same requests and the client's cache answers all of them.
"""

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from dataset_builder.translate import GOLD_TRANSLATOR, lost_section_reason
from ko_radiology.answer_kinds import QuestionType, declines, question_type
from ko_radiology.glossary import Glossary
from ko_radiology.prompts import TASK_TYPES, build_messages, format_user_turn
from ko_radiology.sample_corpus import SAMPLE_DIR, load_gold_qa
from ko_radiology.text_checks import is_mostly_korean

TASK_DEFINITIONS = {
    "질문 답변": "판독문 내용에 대해 환자나 의료진이 물을 법한 구체적인 질문 하나",
    "축약어 확장": "판독문에 나온 의학 약어(예: PICC, ETT, CHF)를 풀어서 설명해 달라는 요청 하나",
    "바꾸어 말하기": "판독문(또는 그 결론)을 환자가 이해할 수 있는 쉬운 말로 바꾸어 설명해 달라는 요청 하나",
    "요약": "판독문의 주요 소견과 결론을 짧게 요약해 달라는 요청 하나",
}
ANSWER_GUIDES = {
    "질문 답변": "판독문에 근거해 질문에 정확히 답하세요. "
    "판독문으로 답할 수 없으면 그 정보가 판독문에 없다고 말하세요.",
    "축약어 확장": "요청된 약어마다 영어 원어와 한국어 뜻을 함께 설명하세요.",
    "바꾸어 말하기": "전문 용어 없이 환자가 이해할 수 있는 쉬운 말로 설명하고, 판독문에 없는 내용은 덧붙이지 마세요.",
    "요약": "주요 소견과 결론만 간결하게 요약하세요.",
}
ANSWER_RULES = "답변은 한국어로, 판독문 내용만 근거로, 세 문장 이내로 쓰세요."
QUESTION_SYSTEM_PROMPT = (
    "당신은 흉부 X선 판독문으로 한국어 지시문 데이터를 만드는 의료 언어 전문가입니다. "
    'JSON 한 줄로만 답하세요: {"instruction": "...", "answerable": true 또는 false}. '
    "answerable은 판독문만으로 답할 수 있으면 true입니다."
)
SENTENCE_END = re.compile(r"[.?!](?=\s|$)")
POOL_CHUNK = 32
"""Reports per chunk between pool updates; fixed, because it shapes the prompts and so the cache keys."""
FEW_SHOT = 3
POOL_SIZE = 30


def char_ngrams(text: str, n: int = 3) -> set[str]:
    """Character n-grams with spaces removed: Korean particles glue to words, so words are the wrong unit."""
    compact = re.sub(r"\s+", "", text)
    return {compact[i : i + n] for i in range(max(1, len(compact) - n + 1))}


def similarity(a: str, b: str) -> float:
    grams_a, grams_b = char_ngrams(a), char_ngrams(b)
    return len(grams_a & grams_b) / len(grams_a | grams_b)


def qa_record(
    translation: dict,
    index: int,
    task: str,
    instruction: str,
    answer: str,
    answerable: bool,
    generator_model: str,
    split: str,
    question_kind: QuestionType,
    expanded_abbreviations: list[str],
) -> dict:
    return {
        "id": f"{translation['study_id']}-{index:02d}",
        "study_id": translation["study_id"],
        "patient_id": translation["patient_id"],
        "report_ko": translation["report_ko"],
        "task": task,
        "instruction": instruction,
        "answer": answer,
        "answerable": answerable,
        "question_type": question_kind,
        "expanded_abbreviations": expanded_abbreviations,
        "messages": build_messages(translation["report_ko"], instruction, answer),
        "generator_model": generator_model,
        "split": split,
        "translation_flags": translation["quality_flags"],
    }


def whole_translations(translations: list[dict]) -> list[dict]:
    """The translations QA may be built from: none whose Korean report lost a section (the pipeline counts those)."""
    return [translation for translation in translations if lost_section_reason(translation) is None]


class GoldQAGenerator:
    backend = model = GOLD_TRANSLATOR

    def __init__(self, data_dir: Path):
        self.gold = load_gold_qa(data_dir)
        self.rejected: Counter = Counter()

    def generate(self, translations: list[dict], split: str) -> list[dict]:
        return [
            qa_record(
                translation,
                index,
                row["task"],
                row["instruction"],
                row["answer"],
                row["answerable"],
                self.model,
                split,
                row["question_type"],
                row["expanded_abbreviations"],
            )
            for translation in whole_translations(translations)
            for index, row in enumerate(self.gold.get(translation["study_id"], []), start=1)
        ]


def parse_question(reply: str | None) -> tuple[str, bool]:
    """The instruction and whether the report answers it; plain text is accepted from models that ignore JSON."""
    text = (reply or "").strip()
    match = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if match:
        try:
            parsed = json.loads(match.group(0))
            return str(parsed.get("instruction", "")).strip(), bool(parsed.get("answerable", True))
        except (json.JSONDecodeError, AttributeError):
            pass
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first_line, True


class LLMQAGenerator:
    """Two-stage generation through `complete_many` (the shared client), with counted filters."""

    backend = "llm"

    def __init__(
        self,
        complete_many: Callable[[list[list[dict]]], list[str | None]],
        weights: list[float],
        tasks_per_report: int,
        seed: int,
        duplicate_threshold: float,
    ):
        self.complete_many = complete_many
        self.model = complete_many.model
        self.weights = weights
        self.tasks_per_report = tasks_per_report
        self.seed = seed
        self.duplicate_threshold = duplicate_threshold
        self.examples = self._seed_examples()
        self.pool: dict[str, list[str]] = {task: [] for task in TASK_TYPES}
        self.rejected: Counter = Counter()
        self.glossary = Glossary.from_tsv()

    def _abbreviations_named(self, task: str, instruction: str) -> list[str]:
        """The glossary abbreviations an 축약어 확장 request names: what `eval.check` scores its expansion on."""
        if task != "축약어 확장":
            return []
        return [entry.english for entry in self.glossary.terms_in(instruction) if entry.expansion]

    @staticmethod
    def _seed_examples() -> dict[str, list[str]]:
        """Few-shot instructions per task, from the shipped gold QA (hand-written, so safe to show any model)."""
        examples: dict[str, list[str]] = {task: [] for task in TASK_TYPES}
        for rows in load_gold_qa(SAMPLE_DIR).values():
            for row in rows:
                examples[row["task"]].append(row["instruction"])
        return examples

    def generate(self, translations: list[dict], split: str) -> list[dict]:
        """Chunks are cut before cut reports are left out, so a rerun that completes one keeps the others' chunks
        (and so their prompts and cache keys)."""
        records = []
        for start in range(0, len(translations), POOL_CHUNK):
            records += self._generate_chunk(whole_translations(translations[start : start + POOL_CHUNK]), split)
        return records

    def _sample_tasks(self, rng: random.Random) -> list[str]:
        available = [task for task, weight in zip(TASK_TYPES, self.weights, strict=True) if weight > 0]
        weights = [weight for weight in self.weights if weight > 0]
        chosen: list[str] = []
        while available and len(chosen) < self.tasks_per_report:  # without replacement, by weight
            task = rng.choices(available, weights)[0]
            index = available.index(task)
            chosen.append(available.pop(index))
            weights.pop(index)
        return chosen

    def _question_messages(self, translation: dict, task: str, shown: list[str]) -> list[dict]:
        examples = "\n".join(f"- {example}" for example in shown)
        user = (
            f"작업 유형: {task} — {TASK_DEFINITIONS[task]}\n예시 지시문:\n{examples}\n\n"
            f"[판독문]\n{translation['report_ko']}\n\n위 판독문에 대한 새 지시문을 예시와 다르게 하나 만드세요."
        )
        return [{"role": "system", "content": QUESTION_SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def _answer_messages(self, translation: dict, task: str, instruction: str) -> list[dict]:
        system = f"당신은 흉부 X선 판독문을 설명하는 한국어 의료 보조 AI입니다. {ANSWER_GUIDES[task]} {ANSWER_RULES}"
        user = format_user_turn(translation["report_ko"], instruction)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _generate_chunk(self, translations: list[dict], split: str) -> list[dict]:
        candidates = []  # (translation, task, shown examples)
        for translation in translations:
            rng = random.Random(f"{self.seed}-{translation['study_id']}")
            for task in self._sample_tasks(rng):
                shown = rng.sample(self.examples[task], min(FEW_SHOT, len(self.examples[task])))
                shown += self.pool[task][-FEW_SHOT:]
                candidates.append((translation, task, shown))
        replies = self.complete_many([self._question_messages(t, task, shown) for t, task, shown in candidates])
        questions = self._filter_questions(candidates, replies)
        answers = self.complete_many([self._answer_messages(t, task, q) for t, task, q, _ in questions])
        records, per_study = [], Counter()
        for (translation, task, instruction, answerable), answer in zip(questions, answers, strict=True):
            reason = self._answer_problem(task, answerable, answer)
            if reason:
                self.rejected[reason] += 1
                continue
            per_study[translation["study_id"]] += 1
            records.append(
                qa_record(
                    translation,
                    per_study[translation["study_id"]],
                    task,
                    instruction,
                    answer.strip(),
                    answerable,
                    self.model,
                    split,
                    question_type(answerable, answer) if task == "질문 답변" else "open",
                    self._abbreviations_named(task, instruction),
                )
            )
            self.pool[task] = (self.pool[task] + [instruction])[-POOL_SIZE:]
        return records

    def _filter_questions(self, candidates, replies) -> list[tuple[dict, str, str, bool]]:
        accepted: list[tuple[dict, str, str, bool]] = []
        for (translation, task, shown), reply in zip(candidates, replies, strict=True):
            instruction, answerable = parse_question(reply)
            same_report = [q for t, _, q, _ in accepted if t is translation]
            if reply is None:
                reason = "question_request_failed"
            elif not instruction:
                reason = "question_malformed"
            elif not is_mostly_korean(instruction):
                reason = "question_not_korean"
            elif any(similarity(instruction, example) >= self.duplicate_threshold for example in shown):
                reason = "question_copied_from_examples"
            elif any(similarity(instruction, other) >= self.duplicate_threshold for other in same_report):
                reason = "question_near_duplicate"
            else:
                accepted.append((translation, task, instruction, answerable if task == "질문 답변" else True))
                continue
            self.rejected[reason] += 1
        return accepted

    @staticmethod
    def _answer_problem(task: str, answerable: bool, answer: str | None) -> str | None:
        if answer is None:
            return "answer_request_failed"
        answer = answer.strip()
        if not answer:
            return "answer_empty"
        if not is_mostly_korean(answer):
            return "answer_not_korean"
        if answerable and declines(answer):
            return "answer_refuses_answerable_question"
        if len(SENTENCE_END.findall(answer)) > 3:
            return "answer_over_three_sentences"
        return None
