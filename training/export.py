"""Merge a LoRA adapter into its base model, for servers that take plain weights (`transformers serve`, vLLM), or
export it as one GGUF file for llama.cpp, Ollama and LM Studio.

```bash
python -m training.export out/gemma3-270m-ko-radiology-lora --out out/gemma3-270m-ko-radiology-merged
transformers serve out/gemma3-270m-ko-radiology-merged

python -m training.export out/gemma3-270m-ko-radiology-lora --out out/gemma3-270m-ko-radiology-gguf --format gguf
llama-server -m out/gemma3-270m-ko-radiology-gguf/gemma3-270m-ko-radiology-Q8_0.gguf --jinja
```

The base is loaded unquantized even for a QLoRA adapter, so the merged weights are plain `--dtype` tensors; token rows
the adapter carries (`trainable_token_indices`) are written into the embedding. The merged folder gets its own model
card (and the adapter's quality numbers, which it shares). It is written next to `--out` and moved into place at the
end, so an interrupted export leaves nothing half-written. `--format gguf` takes an adapter (merged first, in a
folder that is removed afterwards) or a merged model folder; see `training/gguf_export.py`. `--push_to_hub` uploads
what the folder is for the Hub (never local bookkeeping).
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from ko_radiology.atomic_io import replace_dir
from ko_radiology.cli import run_cli
from ko_radiology.embedded_models import EMBEDDED_PREFIX
from ko_radiology.generation import is_adapter
from ko_radiology.hardware import default_dtype
from ko_radiology.model_loading import local_base_for, resolve_model
from training.gguf_export import GGUF_HUB_FILES, GGUF_TYPES, MODELFILE, export_gguf
from training.hub_push import push_model_folder
from training.model_card import CARD_VALUES_FILE, QUALITY_FILE, render_saved_card

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
MERGED_HUB_FILES = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer*",
    "chat_template.jinja",
    "README.md",
    QUALITY_FILE,
)
"""What `--push_to_hub` uploads from a merged model folder."""


def check_out_dir(out_dir: Path, model_dir: Path) -> None:
    """The export replaces `out_dir` whole, so it must be new, empty or an earlier export (`config.json` of a merged
    model, `Modelfile` of a GGUF), never a folder of the user's (`--out ~`) or the model it exports."""
    if out_dir.is_file():
        raise ValueError(f"--out {out_dir} is a file; pass a folder for the exported model.")
    if out_dir.resolve() == model_dir.resolve():
        raise ValueError(f"--out {out_dir} is the model being exported; pass a new folder.")
    earlier_export = (out_dir / "config.json").is_file() or (out_dir / MODELFILE).is_file()
    if out_dir.is_dir() and any(out_dir.iterdir()) and not earlier_export:
        raise ValueError(
            f"--out {out_dir} holds files that are not a model folder; the export replaces the whole folder. "
            "Pass a new folder (e.g. out/gemma3-270m-ko-radiology-merged)."
        )


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, dtype: str = default_dtype("merge")) -> Path:
    """Load base + adapter from `adapter_dir`, merge, and save the plain model, tokenizer and card to `out_dir`."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    check_out_dir(out_dir, adapter_dir)
    if not is_adapter(adapter_dir):
        raise FileNotFoundError(
            f"{adapter_dir} has no adapter_config.json. Pass the output_dir of `python -m training.sft`."
        )
    base = local_base_for(PeftConfig.from_pretrained(adapter_dir).base_model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=DTYPES[dtype])
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)

    def save(tmp_dir: Path) -> None:
        merged.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        for name in (CARD_VALUES_FILE, QUALITY_FILE):
            if (adapter_dir / name).is_file():
                shutil.copy2(adapter_dir / name, tmp_dir / name)
        render_saved_card(tmp_dir, merged=True, model_name=out_dir.name, model_id=str(out_dir))

    return replace_dir(out_dir, save)


def gguf_from(model: str, out_dir: Path, gguf_type: str, dtype: str) -> Path:
    """The GGUF of an adapter (merged first, beside `out_dir`, and the merge removed after) or of a model folder."""
    model_dir = Path(resolve_model(model) if model.startswith(EMBEDDED_PREFIX) else model)
    if is_adapter(model_dir):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}-merge-", dir=out_dir.parent) as tmp:
            return export_gguf(merge_adapter(model_dir, Path(tmp) / out_dir.name, dtype), out_dir, gguf_type)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} has neither adapter_config.json nor config.json. Pass the output_dir of `python -m "
            "training.sft`, a merged model folder or embedded:base."
        )
    return export_gguf(model_dir, out_dir, gguf_type)


def export_command(args: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="output_dir of training.sft (an adapter); for --format gguf also a merged model")
    parser.add_argument("--out", required=True, help="folder for the exported model (replaced whole)")
    parser.add_argument(
        "--format",
        default="merged",
        choices=["merged", "gguf"],
        help="merged: the adapter merged into its base as safetensors; gguf: one GGUF file and an Ollama Modelfile",
    )
    parser.add_argument(
        "--gguf-type",
        default="q8_0",
        choices=GGUF_TYPES,
        help="GGUF weight type (q4_k_m needs `python -m ko_radiology.llama_cpp build`)",
    )
    parser.add_argument(
        "--dtype", default=default_dtype("merge"), choices=sorted(DTYPES), help="dtype of the merged weights"
    )
    parser.add_argument("--push_to_hub", action="store_true", help="upload the exported folder to --hub_model_id")
    parser.add_argument("--hub_model_id", help="the Hub model repo to push to, e.g. org/gemma3-270m-ko-radiology-GGUF")
    parser.add_argument("--hub_private_repo", action="store_true", help="create the Hub repo private")
    parsed = parser.parse_args(args)
    if parsed.push_to_hub and not parsed.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME.")
    out_dir = Path(parsed.out)
    if parsed.format == "gguf":
        check_out_dir(out_dir, Path(parsed.model))
        print(f"GGUF written to {gguf_from(parsed.model, out_dir, parsed.gguf_type, parsed.dtype)}")
    else:
        print(f"Merged model written to {merge_adapter(parsed.model, out_dir, parsed.dtype)}")
    if parsed.push_to_hub:
        patterns = GGUF_HUB_FILES if parsed.format == "gguf" else MERGED_HUB_FILES
        commit = push_model_folder(out_dir, parsed.hub_model_id, list(patterns), parsed.hub_private_repo or None)
        print(f"Pushed {out_dir} to https://huggingface.co/{parsed.hub_model_id} ({commit}).")


def main(args: list[str] | None = None) -> int:
    return run_cli(export_command, args)


if __name__ == "__main__":
    sys.exit(main())
