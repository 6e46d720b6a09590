"""`SFTTrainer` that projects through the LM head only where the loss is taken.

TRL's fused head scores every position off Triton devices (CPU included), and Gemma's 262k-entry head is most of the
cost of a forward pass. Here the model is asked, with `logits_to_keep`, for logits only at positions whose next token
is an answer token (~15% of a report-plus-question example), and the cross-entropy is taken on those. With
`unlikelihood_weight`, a repeat-unlikelihood term on the same log-probabilities teaches the model not to write again
what its answer already wrote: the loops a small model falls into under greedy decoding. With `answer_start_weight`,
each answer's first token counts that many times: the token that says 네, 아니요, or that the report does not say it,
one decision among the ~40 tokens of an answer, and the one a user reads first.
"""

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import CausalLMOutputWithPast
from trl import SFTTrainer


def positions_to_score(labels: torch.Tensor) -> torch.Tensor:
    """Sequence positions whose next-token label is kept in any row of the batch (1-D, for `logits_to_keep`)."""
    return (labels[:, 1:] != -100).any(dim=0).nonzero().flatten()


def answer_starts(targets: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Mask of the labels that start an answer, for one row's labels at sequence `positions`: an answer is a run of
    labels at consecutive positions (each answer of a chat, or of a packed row, is its own)."""
    valid = targets != -100
    follows = torch.cat([valid.new_zeros(1), valid[:-1] & (positions[1:] == positions[:-1] + 1)])
    return valid & ~follows


def earlier_answer_tokens(targets: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[K, K] mask for one row's labels at sequence `positions`: (i, j) is set when label j is the first occurrence of
    its token earlier in the same answer as label i, and is not label i's own token.

    Answers as `answer_starts` delimits them.
    """
    valid = targets != -100
    answer = torch.cumsum(answer_starts(targets, positions).long(), 0)
    index = torch.arange(targets.numel(), device=targets.device)
    earlier = index[None, :] < index[:, None]
    same_answer = (answer[None, :] == answer[:, None]) & valid[None, :] & valid[:, None]
    same_token = targets[None, :] == targets[:, None]
    repeated = (same_token & earlier & same_answer).any(dim=1)  # the token occurred before in its answer
    return earlier & same_answer & ~same_token & ~repeated[None, :]


def repeat_unlikelihood(logprobs: torch.Tensor, targets: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Token-level unlikelihood against repeating (Welleck et al., 2020, "Neural Text Generation with Unlikelihood
    Training"): the sum, over labelled positions, of -log(1 - p(c)) for each token c the answer already wrote, other
    than the gold next token. Plain cross-entropy never lowers those; a small model then copies its own recent words
    when unsure, and greedy decoding turns that into loops."""
    total = logprobs.new_zeros(())
    for row_logprobs, row_targets in zip(logprobs, targets, strict=True):
        candidates = earlier_answer_tokens(row_targets, positions)
        tokens = row_targets.clamp(min=0)
        candidate_logprobs = row_logprobs.gather(-1, tokens[None, :].expand(tokens.numel(), -1))
        penalty = -torch.log1p(-candidate_logprobs.exp().clamp(max=1 - 1e-6))
        total = total + (penalty * candidates).sum()
    return total


def answer_only_loss(
    model: torch.nn.Module,
    inputs: dict,
    num_items_in_batch: int | torch.Tensor | None = None,
    unlikelihood_weight: float = 0.0,
    answer_start_weight: float = 1.0,
) -> tuple[torch.Tensor, CausalLMOutputWithPast, torch.Tensor]:
    """Mean next-token cross-entropy over the labelled tokens, computing logits at those positions only, each answer's
    first token weighted `answer_start_weight`, plus `unlikelihood_weight` times the repeat unlikelihood
    (`repeat_unlikelihood`), per labelled token.

    Returns:
        The loss (divided by `num_items_in_batch` when given, as `Trainer` does under gradient accumulation), the model
        outputs (logits of the kept positions) and the number of correctly predicted labelled tokens.
    """
    labels = inputs["labels"]
    keep = positions_to_score(labels)
    model_inputs = {key: value for key, value in inputs.items() if key != "labels"}
    outputs = model(**model_inputs, use_cache=False, logits_to_keep=keep)
    targets = labels[:, 1:][:, keep]
    logits = outputs.logits.float()
    logprobs = logits.log_softmax(dim=-1)  # once, for both terms
    token_losses = F.nll_loss(logprobs.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none")
    loss_sum = token_losses.sum()
    if answer_start_weight != 1.0:
        starts = torch.stack([answer_starts(row, keep) for row in targets]).flatten()
        loss_sum = loss_sum + (answer_start_weight - 1.0) * token_losses[starts].sum()
    if unlikelihood_weight:
        loss_sum = loss_sum + unlikelihood_weight * repeat_unlikelihood(logprobs, targets, keep)
    num_tokens = (targets != -100).sum() if num_items_in_batch is None else num_items_in_batch
    loss = loss_sum / torch.as_tensor(num_tokens, device=loss_sum.device).clamp(min=1)
    with torch.no_grad():
        num_correct = ((logits.argmax(dim=-1) == targets) & (targets != -100)).sum()
    return loss, outputs, num_correct


class AnswerOnlySFTTrainer(SFTTrainer):
    """`SFTTrainer` whose loss computes logits only at labelled positions; metrics as TRL logs them, minus entropy.

    The metrics are kept here and added to the logs in `log` (the public hook `Trainer` calls at every logging step),
    so nothing depends on `SFTTrainer`'s private bookkeeping, which then stays empty.

    Args:
        unlikelihood_weight: Weight of the repeat unlikelihood in the training loss (0: plain cross-entropy).
        answer_start_weight: Weight of each answer's first token in the training loss (1: as every other token).
            The validation loss is always the plain cross-entropy, comparable between runs.
    """

    def __init__(self, *args, unlikelihood_weight: float = 0.0, answer_start_weight: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.unlikelihood_weight = unlikelihood_weight
        self.answer_start_weight = answer_start_weight
        self.token_accuracies: dict[str, list[float]] = {"train": [], "eval": []}
        """Per mode, the labelled-token accuracy of each batch since the last log."""
        self.train_tokens_seen = 0
        """Tokens of every training batch so far (padding excluded), over all processes: TRL's `num_tokens`."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        weights = (self.unlikelihood_weight, self.answer_start_weight) if mode == "train" else (0.0, 1.0)
        loss, outputs, num_correct = answer_only_loss(model, inputs, num_items_in_batch, *weights)
        # As in `SFTTrainer.compute_loss`: `num_items_in_batch` counts every rank's tokens while DDP averages gradients
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())

        num_labelled = self.accelerator.gather_for_metrics((inputs["labels"][:, 1:] != -100).sum()).sum()
        num_correct = self.accelerator.gather_for_metrics(num_correct).sum()
        self.token_accuracies[mode].append((num_correct / num_labelled).item() if num_labelled > 0 else 0.0)
        if mode == "train":
            if "attention_mask" in inputs:
                local_tokens = inputs["attention_mask"].sum()
            else:  # padding-free: one packed row, every position a real token
                local_tokens = torch.tensor(inputs["input_ids"].numel(), device=inputs["input_ids"].device)
            self.train_tokens_seen += self.accelerator.gather_for_metrics(local_tokens).sum().item()
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean token accuracy since the last log and the tokens seen, named as `SFTTrainer` names them
        (`eval_` first in evaluation)."""
        mode = "train" if self.model.training else "eval"
        accuracies = self.token_accuracies[mode]
        if accuracies:  # a loss was computed in this mode since the last log
            prefix = "eval_" if mode == "eval" else ""
            logs[prefix + "mean_token_accuracy"] = sum(accuracies) / len(accuracies)
            logs[prefix + "num_tokens"] = float(self.train_tokens_seen)
            accuracies.clear()
        super().log(logs, start_time)
