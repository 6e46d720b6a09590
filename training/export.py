"""Merge a LoRA adapter into its base model, for servers that take plain weights (`transformers serve`, vLLM).

```bash
python -m training.export out/gemma3-270m-ko-radiology-lora --out out/gemma3-270m-ko-radiology-merged
transformers serve out/gemma3-270m-ko-radiology-merged
```

The base is loaded unquantized even for a QLoRA adapter, so the merged weights are plain `--dtype` tensors; token rows
the adapter carries (`trainable_token_indices`) are written into the embedding. The merged folder gets its own model
card (and the adapter's quality numbers, which it shares). It is written next to `--out` and moved into place at the
end, so an interrupted export leaves nothing half-written.
"""

import argparse
import shutil
import sys
from pathlib import Path

import torch

from ko_radiology.atomic_io import replace_dir
from ko_radiology.cli import run_cli
from ko_radiology.generation import is_adapter
from ko_radiology.hardware import default_dtype
from ko_radiology.model_loading import local_base_for
from training.model_card import CARD_VALUES_FILE, QUALITY_FILE, render_saved_card

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def check_out_dir(out_dir: Path) -> None:
    """The export replaces `out_dir` whole, so it must be new, empty or an earlier model folder (`config.json`), never
    a folder of the user's (`--out ~`) or the adapter itself."""
    if out_dir.is_file():
        raise ValueError(f"--out {out_dir} is a file; pass a folder for the merged model.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "config.json").is_file():
        raise ValueError(
            f"--out {out_dir} holds files that are not a model folder; the export replaces the whole folder. "
            "Pass a new folder (e.g. out/gemma3-270m-ko-radiology-merged)."
        )


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, dtype: str = default_dtype("merge")) -> Path:
    """Load base + adapter from `adapter_dir`, merge, and save the plain model, tokenizer and card to `out_dir`."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    check_out_dir(out_dir)
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


def export_command(args: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter", help="output_dir of training.sft (adapter_config.json, tokenizer)")
    parser.add_argument("--out", required=True, help="folder for the merged model")
    parser.add_argument(
        "--dtype", default=default_dtype("merge"), choices=sorted(DTYPES), help="dtype of the merged weights"
    )
    parsed = parser.parse_args(args)
    print(f"Merged model written to {merge_adapter(parsed.adapter, parsed.out, parsed.dtype)}")


def main(args: list[str] | None = None) -> int:
    return run_cli(export_command, args)


if __name__ == "__main__":
    sys.exit(main())
