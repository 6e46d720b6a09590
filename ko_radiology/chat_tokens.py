"""Checks of a model's chat tokens: the template exists, which special tokens it writes, and which of them the
model never learned (rows still at their initialization)."""

from pathlib import Path

from ko_radiology.prompts import build_messages


def template_special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """Special tokens the chat template writes: those that open a turn and those that close the assistant's answer.

    Both come from rendering one exchange of `build_messages`; the closing ones are those after the answer text.
    """
    special = {token_id for token_id, token in tokenizer.added_tokens_decoder.items() if token.special}
    messages = build_messages("report", "question", "answer")
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=True)
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    after_answer = full[len(prompt["input_ids"]) :]
    closing = list(dict.fromkeys(t for t in after_answer if t in special))
    opening = list(dict.fromkeys(t for t in full if t in special and t not in closing))
    return opening, closing


def untrained_rows(embeddings, token_ids: list[int], min_cosine: float = 0.95, min_copies: int = 8) -> dict[int, int]:
    """Tokens whose embedding row is a near-copy of at least `min_copies` other rows, with their number of copies.

    Pretraining moves every row it sees; rows it never saw stay at their shared initialization (in Gemma 3 270M,
    `<end_of_turn>` has cosine > 0.95 with about 6,000 other rows, a trained token with none). A model cannot learn to
    emit such a token with a LoRA alone: its near-copies win as often as it does.
    """
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        queries = F.normalize(embeddings[token_ids].float(), dim=1)
        copies = torch.zeros(len(token_ids), dtype=torch.long)
        for block in embeddings.split(32768):
            copies += (F.normalize(block.float(), dim=1) @ queries.T > min_cosine).sum(dim=0)
    return {token_id: int(n) - 1 for token_id, n in zip(token_ids, copies, strict=True) if n - 1 >= min_copies}


def require_chat_template(tokenizer, source: str | Path, fix: str = "Use an instruct/chat model.") -> None:
    """Every model here is prompted through `build_messages`, so a tokenizer without a chat template is unusable."""
    if not tokenizer.chat_template:
        raise ValueError(f"The tokenizer of {source} has no chat template. {fix}")
