"""`make gpu-check`: the 7B QLoRA recipe run end to end as shipped, on a GPU, with nothing downloaded.

```bash
python -m training.gpu_check                  # a CUDA machine: Qwen2.5-7B's shapes, random weights, 4-bit NF4
python -m training.gpu_check --cpu-dry-run    # the same commands on the same architecture shrunk to 2 layers, on CPU
```

Each step is its own process, run in this order whatever the device:
1. `python -m dataset_builder build --gold` and `export`: the shipped sample as a Hub folder;
2. `python -m training.gpu_check --build-model`: random weights (seed 0, bf16) with the shapes of
   `training/recipes/qwen2.5-7b-shapes.json` (Qwen2.5-7B's, with the vocabulary of the embedded Gemma 3 tokenizer,
   the one tokenizer this project has offline), saved once and reused while the shapes and tokenizer stay the same;
3. `python -m training.sft` with `qwen2.5-7b-instruct-qlora.yaml`, overriding only the model, the dataset, `max_steps`
   and the output dir: tokens/s between its first and last training log (steady state: CUDA start-up, loading and
   the validation pass before training fall outside), and the peak GPU memory nvidia-smi sees above what was in use
   before the step, against the recipe's claim of one 24 GB GPU;
4. `python -m training.export`: the adapter merged into the bf16 base;
5. `python -m eval.check` on a few test questions with the merged model, against the base;
6. step 3 through `accelerate launch` with `accelerate/ddp.yaml` on every GPU, where there are two or more.

Random weights make losses and answers meaningless: what is checked is that each command runs and what it costs.
On CPU, bitsandbytes 4-bit is used where it can quantize on this CPU (QLoRA as on the GPU), else LoRA
(`--load_in_4bit false`), and the table says which. One table is printed and written, with every command, to
`summary.json` in `--out`.
"""

import argparse
import ast
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ko_radiology.atomic_io import replace_dir, write_text_atomically
from ko_radiology.cli import EXIT_FAILED, EXIT_OK, run_cli
from ko_radiology.hardware import cpu_model_name
from ko_radiology.model_loading import resolve_model

ROOT = Path(__file__).resolve().parent.parent
RECIPES = Path(__file__).resolve().parent / "recipes"
RECIPE = RECIPES / "qwen2.5-7b-instruct-qlora.yaml"
SHAPES = RECIPES / "qwen2.5-7b-shapes.json"
DDP_CONFIG = RECIPES / "accelerate" / "ddp.yaml"
TINY_SHAPES = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_window_layers": 2,
}
"""What `--cpu-dry-run` changes in the shapes: the same architecture, vocabulary and tokens, two small layers."""
CLAIMED_GPU_GIB = 24
"""The recipe's "one GPU with >= 24 GB"."""
MODEL_MARKER = "gpu_check_model.json"
RUN_MARKER = "gpu_check_run.json"
DRY_RUN_FLAGS = ["--use_cpu", "true", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1"]
DRY_RUN_FLAGS += ["--per_device_eval_batch_size", "1", "--eval_max_examples", "4", "--logging_steps", "1"]
"""What the dry run adds to the training command: the CPU (the Trainer refuses bf16 on CPU without `use_cpu`), one
sequence a step and 4 validation examples (with the 262k-entry head, a step of the recipe's 32 sequences takes about
two minutes on 2 cores), and a log every step (so that a few steps still give the steady-state tokens/s)."""
CHECK_FLAGS = ["--split", "test", "--limit", "4", "--max-new-tokens", "16", "--batch-size", "4", "--dtype", "bfloat16"]
"""A few test questions, short answers: the merged model's generation path, not its quality."""


@dataclass
class Step:
    """One command of the check and what it cost; `status` is ok, failed, skipped or not run (after a failure)."""

    name: str
    command: list[str]
    status: str = "not run"
    wall_s: float | None = None
    peak_rss_gib: float | None = None
    peak_gpu_gib: float | None = None
    result: str = ""
    figures: dict = field(default_factory=dict)


def build_random_model(shapes: Path, tokenizer_dir: str, out_dir: Path, tiny: bool) -> str:
    """Random bf16 weights (seed 0) with `shapes` (shrunk by `TINY_SHAPES` when `tiny`) and the tokenizer, saved to
    `out_dir`; a folder this built earlier from the same shapes and tokenizer is kept. Returns what was done."""
    values = json.loads(shapes.read_text(encoding="utf-8")) | (TINY_SHAPES if tiny else {})
    marker = {"shapes": values, "tokenizer": str(Path(tokenizer_dir).resolve())}
    if (out_dir / MODEL_MARKER).is_file() and json.loads((out_dir / MODEL_MARKER).read_text()) == marker:
        return f"reused {out_dir}"
    if out_dir.exists() and not (out_dir / MODEL_MARKER).is_file():
        raise ValueError(f"{out_dir} exists and was not written by the GPU check. Pass another --out.")

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    expected = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    expected |= {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    for key, value in expected.items():
        if values.get(key) != value:
            raise ValueError(
                f"{shapes} has {key} {values.get(key)}, but the tokenizer in {tokenizer_dir} has {value}. "
                f"Set {key} to {value} in {shapes.name}."
            )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # initializing 7B weights on a GPU: seconds
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**values), dtype=torch.bfloat16)
    parameters = sum(parameter.numel() for parameter in model.parameters())

    def save(tmp_dir: Path) -> None:
        model.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        (tmp_dir / MODEL_MARKER).write_text(json.dumps(marker, indent=2))

    replace_dir(out_dir, save)
    layers, hidden = values["num_hidden_layers"], values["hidden_size"]
    return f"built {parameters / 1e9:.2f}B parameters ({layers} layers, hidden {hidden}, vocab {len(tokenizer)})"


class GpuMemory:
    """memory.used of every GPU as `nvidia-smi` samples it every 100 ms: the peak of a step above what was in use
    before it (the step's CUDA context, weights, activations and the allocator's cache, as a smaller card would need).
    """

    def __init__(self):
        query = ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits", "-lms", "100"]
        self.process = subprocess.Popen(query, stdout=subprocess.PIPE, text=True)
        self.used: dict[int, int] = {}
        self.baseline: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        for line in self.process.stdout:
            index, used = (int(value) for value in line.split(","))
            self.used[index] = used
            self.peak[index] = max(self.peak.get(index, 0), used)

    def start(self) -> None:
        time.sleep(0.3)  # a sample taken after the last step's process ended
        self.baseline, self.peak = dict(self.used), dict(self.used)

    def peak_gib(self) -> float:
        """The largest rise on any one GPU since `start`, in GiB."""
        return max((used - self.baseline.get(index, 0) for index, used in self.peak.items()), default=0) / 1024

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


def gpu_names() -> list[str]:
    """The GPUs nvidia-smi lists (none without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return [line.strip() for line in query.stdout.splitlines() if line.strip()] if query.returncode == 0 else []


def cpu_4bit_problem() -> str | None:
    """Why bitsandbytes cannot train a 4-bit NF4 layer on this CPU as the recipe does (with a bias, as Qwen2's
    attention has, after a validation pass), or None where it can."""
    try:
        import bitsandbytes
        import torch

        layer = bitsandbytes.nn.Linear4bit(64, 64, compute_dtype=torch.bfloat16, quant_type="nf4").to("cpu")
        inputs = torch.randn(2, 64, dtype=torch.bfloat16)
        with torch.no_grad():
            layer.eval()(inputs)  # on AVX512-BF16 CPUs this repacks the weight for inference
        layer.train()(inputs.requires_grad_()).float().sum().backward()
    except Exception as error:  # an ImportError, no CPU kernels, a kernel without autograd: no 4-bit training here
        message = str(error).splitlines()[0] if str(error) else "no message"
        version = getattr(sys.modules.get("bitsandbytes"), "__version__", "not installed")
        reason = f"{type(error).__name__}: {message}"
        return f"bitsandbytes {version} cannot train 4-bit on this CPU after an eval pass: {reason}"
    return None


def training_logs(lines: list[tuple[float, str]]) -> list[tuple[float, dict]]:
    """The Trainer's training log lines (`{'loss': ..., 'num_tokens': ...}`) with the time each was printed."""
    logs = []
    for seen, line in lines:
        text = line[line.find("{") :].strip()
        if "'loss'" in text and "'num_tokens'" in text:
            try:
                logs.append((seen, ast.literal_eval(text)))
            except (ValueError, SyntaxError):
                continue
    return logs


def steady_tokens_per_s(lines: list[tuple[float, str]]) -> float | None:
    """Tokens/s between the first and the last training log: the steps after the first `logging_steps`."""
    logs = training_logs(lines)
    if len(logs) < 2:
        return None
    (start, first), (end, last) = logs[0], logs[-1]
    return (float(last["num_tokens"]) - float(first["num_tokens"])) / (end - start)


def run_step(step: Step, log_path: Path, env: dict, gpu: GpuMemory | None) -> list[tuple[float, str]]:
    """Run the step's command from the repository root, showing and logging its output; fills in status and costs."""
    if gpu is not None:
        gpu.start()
    print(f"\n$ {' '.join(step.command)}", flush=True)
    lines = []
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            step.command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in process.stdout:
            lines.append((time.perf_counter(), line))
            log.write(line)
            sys.stdout.write(line)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own peak RSS
        process.returncode = os.waitstatus_to_exitcode(status)
    step.wall_s = round(time.perf_counter() - started, 1)
    step.peak_rss_gib = round(usage.ru_maxrss / 2**20, 2)
    step.peak_gpu_gib = round(gpu.peak_gib(), 2) if gpu is not None else None
    step.status = "ok" if process.returncode == 0 else "failed"
    if process.returncode != 0:
        step.result = f"exit status {process.returncode}; log: {log_path}"
    return lines


def describe_training(step: Step, lines: list[tuple[float, str]], adapter_dir: Path, quantization: str) -> None:
    """Steady-state tokens/s, steps and the memory verdict of a `training.sft` step."""
    tokens_per_s = steady_tokens_per_s(lines)
    logs = training_logs(lines)
    step.figures = {"tokens_per_s": round(tokens_per_s, 1) if tokens_per_s else None, "training_logs": len(logs)}
    state = sorted(adapter_dir.glob("checkpoint-*/trainer_state.json"))
    if state:
        step.figures["steps"] = json.loads(state[-1].read_text())["global_step"]
    parts = [quantization, f"{step.figures.get('steps', '?')} steps"]
    parts.append(f"{tokens_per_s:,.0f} tokens/s steady" if tokens_per_s else "tokens/s: fewer than 2 training logs")
    if step.peak_gpu_gib is not None:
        step.figures["fits_claimed_gpu"] = step.peak_gpu_gib <= CLAIMED_GPU_GIB
        verdict = "fits" if step.figures["fits_claimed_gpu"] else "does NOT fit"
        parts.append(f"{verdict} the recipe's 1 GPU, {CLAIMED_GPU_GIB} GB")
    step.result = "; ".join(parts)


def fresh_run_dir(run_dir: Path) -> Path:
    """`run_dir` emptied of an earlier check's outputs (training would resume from their checkpoint otherwise); a
    folder the check did not write is never deleted."""
    if run_dir.exists():
        if not (run_dir / RUN_MARKER).is_file():
            raise ValueError(f"{run_dir} exists and was not written by the GPU check. Pass another --out.")
        shutil.rmtree(run_dir)
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / RUN_MARKER).write_text(json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
    return run_dir


def plan(args: argparse.Namespace, out: Path, gpus: int, lora_only: bool) -> list[Step]:
    """The commands, the same on GPU and CPU but for the model's size, `DRY_RUN_FLAGS` and `--load_in_4bit false`
    where bitsandbytes cannot train 4-bit on this CPU."""
    python, run, model, hub = sys.executable, out / "run", out / "model", out / "run" / "sample" / "hub"
    sample = ["build", "--data-dir", "ko_radiology/sample", "--gold", "--out", str(run / "sample" / "build")]
    export_sample = ["export", str(run / "sample" / "build"), "--out", str(hub), "--repo-id", "org/ko-cxr-qa"]
    build = [python, "-m", "training.gpu_check", "--build-model", str(model), "--tokenizer", args.tokenizer]
    sft_args = ["--config", str(RECIPE), "--model_name_or_path", str(model), "--dataset_name", str(hub)]
    sft_args += ["--max_steps", str(args.max_steps or (3 if args.cpu_dry_run else 20))]
    sft_args += (DRY_RUN_FLAGS if args.cpu_dry_run else []) + (["--load_in_4bit", "false"] if lora_only else [])
    accelerate = shutil.which("accelerate", path=str(Path(python).parent)) or "accelerate"
    processes = max(gpus, 2)  # where it is skipped, the command it would run on two GPUs
    ddp = [accelerate, "launch", "--config_file", str(DDP_CONFIG), "--num_processes", str(processes)]
    # As the README's DDP command: the recipe's effective batch of 32 (4 x 8 accumulation) kept across the GPUs
    ddp += ["-m", "training.sft", *sft_args, "--output_dir", str(run / "adapter-ddp")]
    ddp += ["--gradient_accumulation_steps", str(max(1, 8 // processes))]
    return [
        Step("sample", [python, "-m", "dataset_builder", *sample]),
        Step("sample export", [python, "-m", "dataset_builder", *export_sample]),
        Step("model", build + (["--tiny"] if args.cpu_dry_run else [])),
        Step("sft", [python, "-m", "training.sft", *sft_args, "--output_dir", str(run / "adapter")]),
        Step("export", [python, "-m", "training.export", str(run / "adapter"), "--out", str(run / "merged")]),
        Step(
            "check",
            [python, "-m", "eval.check", str(run / "merged"), "--base", str(model), "--dataset", str(hub)]
            + CHECK_FLAGS,
        ),
        Step("sft ddp", ddp),
    ]


def format_table(steps: list[Step]) -> str:
    rows = [("step", "status", "wall", "peak RSS", "peak GPU", "result")]
    for step in steps:
        rows.append(
            (
                step.name,
                step.status,
                "" if step.wall_s is None else f"{step.wall_s:.0f} s",
                "" if step.peak_rss_gib is None else f"{step.peak_rss_gib:.1f} GiB",
                "" if step.peak_gpu_gib is None else f"{step.peak_gpu_gib:.1f} GiB",
                step.result,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + " | " + row[-1]
        for row in rows
    ]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def run_check(args: argparse.Namespace) -> dict:
    names = gpu_names()
    if not args.cpu_dry_run and not names:
        raise ValueError(
            "No CUDA GPU is visible (nvidia-smi lists none). Run on a GPU machine, or pass --cpu-dry-run for the same "
            "commands on a tiny model on CPU."
        )
    args.tokenizer = resolve_model(args.tokenizer)
    out = Path(args.out) / ("cpu-dry-run" if args.cpu_dry_run else "gpu")
    run = fresh_run_dir(out / "run")
    gpus = 0 if args.cpu_dry_run else len(names)
    problem = cpu_4bit_problem() if args.cpu_dry_run else None
    quantization = "LoRA in bf16 (--load_in_4bit false)" if problem else "QLoRA, 4-bit NF4"
    steps = plan(args, out, gpus, lora_only=problem is not None)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env |= {
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    }
    summary = {
        "mode": "cpu-dry-run" if args.cpu_dry_run else "gpu",
        "device": names[0] if gpus else cpu_model_name(),
        "gpus": gpus,
        "cpu": f"{cpu_model_name()}, {os.cpu_count()} cores",
        "load_average_before": [round(load, 2) for load in os.getloadavg()],
        "recipe": str(RECIPE.relative_to(ROOT)),
        "shapes": str(SHAPES.relative_to(ROOT)) + (" shrunk to 2 layers" if args.cpu_dry_run else ""),
        "quantization": quantization,
        "quantization_note": problem or ("bitsandbytes 4-bit on CPU" if args.cpu_dry_run else "bitsandbytes 4-bit"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    gpu = GpuMemory() if gpus else None
    started = time.perf_counter()
    try:
        for step in steps:
            if step.name == "sft ddp" and gpus < 2:
                step.status = "skipped"
                step.result = (
                    "CPU dry run: no GPUs" if args.cpu_dry_run else f"{gpus} GPU visible; DDP needs 2 or more"
                )
                continue
            lines = run_step(step, run / "logs" / f"{step.name.replace(' ', '-')}.log", env, gpu)
            if step.status != "ok":
                break
            if step.name.startswith("sft"):
                describe_training(
                    step, lines, Path(step.command[step.command.index("--output_dir") + 1]), quantization
                )
            elif step.name == "model":
                step.result = next(
                    (text.strip() for _, text in reversed(lines) if text.startswith(("built", "reused"))), ""
                )
            elif step.name == "export":
                step.result = f"merged into the bf16 base: {run / 'merged'}"
            elif step.name == "check":
                quality = json.loads((run / "merged" / "quality.json").read_text())
                step.figures = {key: quality[key] for key in ("examples", "stop_rate", "base_stop_rate", "looping")}
                step.result = f"{quality['examples']} test questions answered (random weights: numbers meaningless)"
    finally:
        if gpu is not None:
            gpu.close()
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    summary["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    # A peak above the recipe's claim fails the check too: the claim, not the code, is then what is wrong
    ran = all(step.status in ("ok", "skipped") for step in steps)
    summary["passed"] = ran and all(step.figures.get("fits_claimed_gpu", True) for step in steps)
    summary["steps"] = [dataclasses.asdict(step) for step in steps]
    summary["table"] = format_table(steps)
    write_text_atomically(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-dry-run", action="store_true", help="the same commands, a 2-layer model, on CPU")
    parser.add_argument("--out", default="out/gpu-check", help="folder for the model, the run and summary.json")
    parser.add_argument(
        "--max-steps", type=int, help="training steps (default 20: the recipe logs every 10; dry run 3)"
    )
    parser.add_argument("--tokenizer", default="embedded:base", help="tokenizer folder the shapes' vocabulary fits")
    parser.add_argument("--build-model", metavar="DIR", help="only build the random model into DIR (step 2)")
    parser.add_argument("--tiny", action="store_true", help="with --build-model: the dry run's 2-layer shapes")
    return parser.parse_args(argv)


def gpu_check_command(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.build_model:
        print(build_random_model(SHAPES, resolve_model(args.tokenizer), Path(args.build_model), args.tiny))
        return EXIT_OK
    summary = run_check(args)
    header = f"GPU check, {summary['mode']} on {summary['device']}, {summary['wall_s']:.0f} s."
    print(f"\n{header} {summary['quantization']}: {summary['quantization_note']}.")
    print(summary["table"])
    written = Path(args.out) / summary["mode"] / "summary.json"
    print(f"{'Passed' if summary['passed'] else 'FAILED'}. Written to {written}.")
    return EXIT_OK if summary["passed"] else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    return run_cli(gpu_check_command, argv)


if __name__ == "__main__":
    sys.exit(main())
