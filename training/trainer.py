"""`SFTTrainer` that projects through the LM head only where the loss is taken.

TRL's fused head scores every position off Triton devices (CPU included), and Gemma's 262k-entry head is most of the
cost of a forward pass. Here the model is asked, with `logits_to_keep`, for logits only at positions whose next token
is an answer token (~15% of a report-plus-question example), and the cross-entropy is taken on those.
"""

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import CausalLMOutputWithPast
from trl import SFTTrainer


def positions_to_score(labels: torch.Tensor) -> torch.Tensor:
    """Sequence positions whose next-token label is kept in any row of the batch (1-D, for `logits_to_keep`)."""
    return (labels[:, 1:] != -100).any(dim=0).nonzero().flatten()


def answer_only_loss(
    model: torch.nn.Module, inputs: dict, num_items_in_batch: int | torch.Tensor | None = None
) -> tuple[torch.Tensor, CausalLMOutputWithPast, torch.Tensor]:
    """Mean next-token cross-entropy over the labelled tokens, computing logits at those positions only.

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
    loss_sum = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum")
    num_tokens = (targets != -100).sum() if num_items_in_batch is None else num_items_in_batch
    loss = loss_sum / torch.as_tensor(num_tokens, device=loss_sum.device).clamp(min=1)
    with torch.no_grad():
        num_correct = ((logits.argmax(dim=-1) == targets) & (targets != -100)).sum()
    return loss, outputs, num_correct


class AnswerOnlySFTTrainer(SFTTrainer):
    """`SFTTrainer` whose loss computes logits only at labelled positions; metrics as TRL logs them, minus entropy."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        loss, outputs, num_correct = answer_only_loss(model, inputs, num_items_in_batch)
        # As in `SFTTrainer.compute_loss`: `num_items_in_batch` counts every rank's tokens while DDP averages gradients
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())

        num_labelled = self.accelerator.gather_for_metrics((inputs["labels"][:, 1:] != -100).sum()).sum()
        num_correct = self.accelerator.gather_for_metrics(num_correct).sum()
        accuracy = (num_correct / num_labelled).item() if num_labelled > 0 else 0.0
        self._metrics[mode]["mean_token_accuracy"].append(accuracy)
        if mode == "train":
            if "attention_mask" in inputs:
                local_tokens = inputs["attention_mask"].sum()
            else:  # padding-free: one packed row, every position a real token
                local_tokens = torch.tensor(inputs["input_ids"].numel(), device=inputs["input_ids"].device)
            self._total_train_tokens += self.accelerator.gather_for_metrics(local_tokens).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss
