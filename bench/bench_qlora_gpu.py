"""GPU speed of the 7B QLoRA recipe without downloading anything: random Llama-2-7B weights, 4-bit NF4, LoRA steps.

    python bench/bench_qlora_gpu.py                       # 10 steps, batch 4 x 1024 tokens
    python bench/bench_qlora_gpu.py --steps 20 --batch-size 2 --seq-len 2048

The model is built from a `LlamaConfig` with Llama-2-7B's shapes and quantized to 4-bit NF4 as it is loaded, then
trained with the recipe's LoRA (r=8, alpha=32, q_proj/v_proj), bf16 compute, gradient checkpointing, and the loss
taken on the last quarter of each sequence (answer-only, as in training) through `training.trainer.answer_only_loss`.
It prints tokens/s over the timed steps (after `--warmup` steps) and peak GPU memory. It needs CUDA and refuses
without it.

The model trains in training mode, and the first step counts the decoder layers' MLP forward calls: checkpointing
recomputes each layer in the backward pass, so a step calls each twice. A model left in eval mode (as
`from_pretrained` returns it, and as this bench ran before: peft's wrapper said `training`, its layers did not)
calls each once and keeps every activation: that run
reported 32.1 GiB peak on an H100. The bench refuses to report a peak unless both checks hold.
`python -m training.gpu_check` runs the shipped recipe itself through `training.sft`.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LLAMA2_7B = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
)


def build_quantized_model(tmp_dir: Path):
    """Random Llama-2-7B weights saved in bf16 (~13.5 GB on disk) and reloaded in 4-bit NF4 on the GPU."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**LLAMA2_7B), dtype=torch.bfloat16)
    model.save_pretrained(tmp_dir)
    del model
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return AutoModelForCausalLM.from_pretrained(
        tmp_dir, quantization_config=quantization, dtype=torch.bfloat16, device_map={"": 0}
    )


def add_lora(model):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    lora = LoraConfig(
        r=8, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    return get_peft_model(model, lora)


def layer_calls(model) -> list[int]:
    """A counter of the decoder layers' MLP forward calls: 2 per layer and step where gradient checkpointing recomputes
    the layers in the backward pass, 1 where it is off. (Forward hooks do not see the recomputation.)"""
    calls = [0]

    def counted(forward):
        def forward_counted(*args, **kwargs):
            calls[0] += 1
            return forward(*args, **kwargs)

        return forward_counted

    for layer in model.get_base_model().model.layers:
        layer.mlp.forward = counted(layer.mlp.forward)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=1024)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_qlora_gpu.py needs a CUDA GPU (bitsandbytes 4-bit training at 7B scale); none is visible.")

    from training.trainer import answer_only_loss

    with tempfile.TemporaryDirectory() as tmp:
        model = add_lora(build_quantized_model(Path(tmp)))
    model.train()  # from_pretrained returns the model in eval mode, where checkpointing is skipped
    calls = layer_calls(model)
    layers = len(model.get_base_model().model.layers)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    input_ids = torch.randint(3, LLAMA2_7B["vocab_size"], (args.batch_size, args.seq_len), device="cuda")
    labels = torch.full_like(input_ids, -100)
    labels[:, -args.seq_len // 4 :] = input_ids[:, -args.seq_len // 4 :]
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}

    torch.cuda.reset_peak_memory_stats()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _, _ = answer_only_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step == 0:
            calls_per_layer = calls[0] / layers
            training = all(layer.training for layer in model.get_base_model().model.layers)
            if not (training and calls_per_layer == 2):
                sys.exit(
                    f"Gradient checkpointing is not active (layers in training mode: {training}; {calls_per_layer:g} "
                    "forward calls per layer in a step, 2 expected): the peak would not be the recipe's."
                )
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    result = {
        "device": torch.cuda.get_device_name(0),
        "training_mode": training,
        "layer_forward_calls_per_step": calls_per_layer,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "tokens_per_s": round(args.steps * args.batch_size * args.seq_len / elapsed, 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_gpu_memory_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "last_loss": round(loss.item(), 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
