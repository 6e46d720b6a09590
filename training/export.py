"""Merge a LoRA adapter into its base model, for servers that take plain weights (`transformers serve`, vLLM).

```bash
python -m training.export runs/gemma3-270m-ko-radiology-lora --out runs/gemma3-270m-ko-radiology-merged
transformers serve runs/gemma3-270m-ko-radiology-merged
```

The base is loaded unquantized even for a QLoRA adapter, so the merged weights are plain `--dtype` tensors. The folder
is written next to `--out` and moved into place at the end, so an interrupted export leaves nothing half-written.
"""

import argparse
from pathlib import Path

import torch
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

from ko_radiology.atomic_io import replace_dir

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, dtype: str = "bfloat16") -> Path:
    """Load base + adapter from `adapter_dir`, merge, and save the plain model and its tokenizer to `out_dir`."""
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{adapter_dir} has no adapter_config.json. Pass the output_dir of `python -m training.sft`."
        )
    model = AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype=DTYPES[dtype])
    merged = model.merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)

    def save(tmp_dir: Path) -> None:
        merged.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)

    return replace_dir(out_dir, save)


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter", help="output_dir of training.sft (adapter_config.json, tokenizer)")
    parser.add_argument("--out", required=True, help="folder for the merged model")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES), help="dtype of the merged weights")
    parsed = parser.parse_args(args)
    print(f"Merged model written to {merge_adapter(parsed.adapter, parsed.out, parsed.dtype)}")


if __name__ == "__main__":
    main()
