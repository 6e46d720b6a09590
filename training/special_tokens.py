"""Chat-template tokens the base never learned: found before training, started from a trained token, saved with the
adapter.

A pretrained (not instruction-tuned) base such as Gemma 3 270M never saw `<start_of_turn>` or `<end_of_turn>`: their
rows (embedding and, the head being tied, output) still sit in the cluster of unused tokens, so a LoRA can point the
hidden state at `<end_of_turn>` but one of its thousands of near-copies wins and the answer never stops. Each such row
is set to the row of a trained token with the same role — `<eos>` for tokens that close the answer, `<bos>` for
tokens that open a turn — plus a small fixed offset that keeps the two apart, and the LoRA learns to steer there.

The rows are frozen during training, and peft's `trainable_token_indices` carries them in `adapter_model.safetensors`,
so `AutoPeftModelForCausalLM` on a fresh base rebuilds the same model. Their peft layers are merged at once, so
training runs at plain-LoRA speed (unmerged, each forward would rebuild the 262k-row embedding and head).
"""

import torch
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ko_radiology.chat_tokens import template_special_tokens, untrained_rows

ROW_OFFSET = 0.3
"""Norm of the offset from the trained token's row, relative to that row's norm (cosine between the two ≈ 0.96)."""


def initialize_untrained_template_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Give each untrained chat-template token the row of a trained token with its role; return their ids.

    Prints what it found and what it did, so a user bringing another base sees it.
    """
    opening, closing = template_special_tokens(tokenizer)
    embeddings = model.get_input_embeddings().weight
    untrained = untrained_rows(embeddings.detach(), opening + closing)
    if not untrained:
        print("Chat-template tokens of the base are all trained; no rows to initialize.")
        return []
    anchors = {
        token_id: tokenizer.eos_token_id if token_id in closing else (tokenizer.bos_token_id or tokenizer.eos_token_id)
        for token_id in untrained
    }
    untrained_anchors = untrained_rows(embeddings.detach(), sorted(set(anchors.values())), min_copies=8)
    if untrained_anchors:
        names = tokenizer.convert_ids_to_tokens(list(untrained_anchors))
        raise ValueError(f"The base's {names} are untrained too, so no trained row can stand in. Use another base.")
    matrices = {id(w): w for w in (embeddings, model.get_output_embeddings().weight)}.values()
    with torch.no_grad():
        for token_id, anchor in anchors.items():
            row = offset_row(embeddings[anchor].float(), token_id)
            for matrix in matrices:
                matrix[token_id] = row.to(matrix.dtype)
    described = ", ".join(
        f"{tokenizer.convert_ids_to_tokens(t)} (a near-copy of {n} other rows) <- {tokenizer.convert_ids_to_tokens(a)}"
        for (t, n), a in zip(untrained.items(), anchors.values(), strict=True)
    )
    print(
        f"Untrained chat-template tokens in the base: {described}. Their rows now start from the trained token's row "
        "(plus a small offset), stay frozen, and are saved with the adapter."
    )
    return sorted(untrained)


def offset_row(anchor_row: torch.Tensor, token_id: int) -> torch.Tensor:
    """`anchor_row` plus a fixed pseudo-random direction (seeded by the token id) of `ROW_OFFSET` times its norm."""
    direction = torch.randn(anchor_row.shape, generator=torch.Generator().manual_seed(token_id))
    return anchor_row + ROW_OFFSET * anchor_row.norm() * direction / direction.norm()


def trainable_token_targets(model: PreTrainedModel, token_ids: list[int]) -> list[int] | dict[str, list[int]]:
    """peft's `trainable_token_indices`: the ids alone when the head is tied to the embedding (peft follows the tie),
    else the same ids on both the embedding and the head."""
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head is None or head.weight is embeddings.weight:
        return token_ids
    names = {module: name.rpartition(".")[2] for name, module in model.named_modules()}
    return {names[embeddings]: token_ids, names[head]: token_ids}


def freeze_and_merge_token_rows(model: torch.nn.Module) -> None:
    """Keep the initialized rows fixed and write them into the base weights, so forwards skip peft's row overlay."""
    for module in model.modules():
        if isinstance(module, TrainableTokensLayer):
            for delta in module.trainable_tokens_delta.values():
                delta.requires_grad_(False)
            module.merge()
