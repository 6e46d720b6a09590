"""The `qa` dataset as token ids and answer-only labels, in the one shared prompt format.

Messages are rebuilt from `report_ko`, `instruction` and `answer` with `ko_radiology.prompts.build_messages`, so a
model is trained on exactly the prompt the Space and eval send. Labels are -100 everywhere except the answers and the
end-of-turn tokens the chat template puts after them, so the model learns to answer and to stop.
"""

import random

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ko_radiology.prompts import build_messages

OVERLONG_POLICIES = ("drop", "truncate")


def tokenize_conversation(report: str, turns: list[tuple[str, str]], tokenizer: PreTrainedTokenizerBase) -> dict:
    """Token ids of a chat about one report, and labels that keep only each answer and its end of turn.

    Each answer starts where the tokenized prompt before it (with the generation prompt) ends, which works for any
    chat template, with or without `{% generation %}` markers. One turn is the single-question format.
    """
    input_ids, labels = [], []
    for index, (question, answer) in enumerate(turns):
        messages = build_messages(report, question, answer, history=turns[:index])
        prompt_ids = tokenizer.apply_chat_template(
            messages[:-1], tokenize=True, add_generation_prompt=True, return_dict=True
        )["input_ids"]
        turn_ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        if prompt_ids[: len(input_ids)] != input_ids or turn_ids[: len(prompt_ids)] != prompt_ids:
            raise ValueError(
                "The chat template renders a prompt differently alone than followed by its answer, so the answer "
                "tokens cannot be found. Use a template whose generation prompt is a prefix of the assistant turn "
                "(set --chat_template_path)."
            )
        if len(turn_ids) == len(prompt_ids):
            raise ValueError(f"The chat template drops the answer to {question!r}; set --chat_template_path.")
        labels += [-100] * (len(prompt_ids) - len(input_ids)) + list(turn_ids[len(prompt_ids) :])
        input_ids = list(turn_ids)
    return {"input_ids": input_ids, "labels": labels}


def tokenize_example(example: dict, tokenizer: PreTrainedTokenizerBase) -> dict:
    """One row as a single-question chat."""
    return tokenize_conversation(example["report_ko"], [(example["instruction"], example["answer"])], tokenizer)


def group_by_report(split: Dataset, seed: int | None = None) -> list[tuple[str, list[tuple[str, str]]]]:
    """The rows' questions gathered per report, reports in the order they first appear.

    With `seed`, each report's questions are shuffled. A dataset lists them by task (questions first, summaries
    last), so in that order a summary or a plain-language explanation is only ever a follow-up and never learned as
    the first question, which is how `eval.check`, `eval.compare` and a new Space visitor ask it. A row without a
    report (plain instruction data mixed in, `training/mixture.py`) stays a chat of its own: unrelated questions
    share nothing to read once.
    """
    chats: dict[str | int, tuple[str, list[tuple[str, str]]]] = {}
    rows = zip(split["report_ko"], split["instruction"], split["answer"], strict=True)
    for index, (report, question, answer) in enumerate(rows):
        key = report if report and report.strip() else index
        chats.setdefault(key, (report, []))[1].append((question, answer))
    if seed is not None:
        shuffle = random.Random(seed).shuffle
        for _, questions in chats.values():
            shuffle(questions)
    return list(chats.values())


def tokenize_conversations(
    report: str, turns: list[tuple[str, str]], tokenizer: PreTrainedTokenizerBase, max_length: int | None
) -> list[dict]:
    """A report's questions as one conversation, halved until each part fits `max_length` (a single question that
    does not fit is left to the over-long policy)."""
    tokens = tokenize_conversation(report, turns, tokenizer)
    if max_length is None or len(tokens["input_ids"]) <= max_length or len(turns) == 1:
        return [tokens]
    middle = len(turns) // 2
    return tokenize_conversations(report, turns[:middle], tokenizer, max_length) + tokenize_conversations(
        report, turns[middle:], tokenizer, max_length
    )


def fit_to_max_length(dataset: Dataset, max_length: int | None, policy: str, label: str) -> Dataset:
    """Drop or truncate (keeping the start) examples longer than `max_length`, and print how many.

    A truncated example keeps its report and the first part of its answer; one whose answer is cut entirely is
    dropped, since it has nothing to learn from.
    """
    if max_length is None:
        return dataset
    overlong = sum(length > max_length for length in map(len, dataset["input_ids"]))
    if overlong == 0:
        return dataset
    if policy == "drop":
        dataset = dataset.filter(lambda example: len(example["input_ids"]) <= max_length)
        print(f"{label}: dropped {overlong} of {overlong + len(dataset)} examples longer than {max_length} tokens.")
        return dataset
    before = len(dataset)
    dataset = dataset.map(lambda example: {key: example[key][:max_length] for key in ("input_ids", "labels")}).filter(
        lambda example: any(token != -100 for token in example["labels"])
    )
    print(
        f"{label}: truncated {overlong} of {before} examples to {max_length} tokens; "
        f"{before - len(dataset)} lost their whole answer and were dropped."
    )
    return dataset


def prepare_qa_split(
    split: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int | None,
    policy: str,
    label: str,
    conversations: bool = False,
    seed: int | None = None,
) -> Dataset:
    """A split as `input_ids` and `labels` columns, ready for the trainer (which then skips its own formatting).

    With `conversations`, the questions about one report become the turns of one chat: the report is then read
    once instead of once per question, which cuts the tokens of the sample's train split by 2.6x for the same
    answers, and teaches the follow-up format the Space uses. `seed` shuffles each chat's questions
    (`group_by_report`).
    """
    if conversations:
        tokenized = Dataset.from_list(
            [
                tokens
                for report, turns in group_by_report(split, seed)
                for tokens in tokenize_conversations(report, turns, tokenizer, max_length)
            ]
        )
    else:
        tokenized = split.map(
            tokenize_example,
            fn_kwargs={"tokenizer": tokenizer},
            remove_columns=split.column_names,
            desc=f"Tokenizing {label}",
        )
    fitted = fit_to_max_length(tokenized, max_length, policy, label)
    if len(fitted) == 0:
        raise ValueError(f"{label} has no example left within max_length={max_length}. Raise --max_length.")
    return fitted
