"""Which model a name means and how it loads: `embedded:` names, local folders, Hub ids, an adapter's base."""

from pathlib import Path

from ko_radiology.chat_tokens import require_chat_template
from ko_radiology.embedded_models import EMBEDDED_HUB_IDS, EMBEDDED_PREFIX, PREPARE_COMMAND, is_prepared, model_path


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
            raise FileNotFoundError(f"{name_or_path} is not prepared ({folder} is missing). Run `{PREPARE_COMMAND}`.")
        return str(folder)
    looks_local = looks_like_local_path(name_or_path)
    if looks_local and not Path(name_or_path).expanduser().is_dir():
        raise FileNotFoundError(
            f"Base model folder {name_or_path} does not exist. Pass --model_name_or_path with a model folder, a Hub "
            "id such as Qwen/Qwen2.5-7B-Instruct, or embedded:base."
        )
    return str(Path(name_or_path).expanduser()) if looks_local else name_or_path


def local_base_for(hub_id: str) -> str:
    """Where to load an adapter's base from: the embedded copy when the adapter's Hub id names an embedded model
    prepared here (what it was trained on, and loadable offline), else the id itself."""
    embedded = next((name for name, known in EMBEDDED_HUB_IDS.items() if known == hub_id), None)
    if embedded and is_prepared(model_path(embedded.removeprefix(EMBEDDED_PREFIX))):
        return resolve_model(embedded)
    return hub_id


def load_model_and_tokenizer(path: str | Path, dtype: str = "auto"):
    """Load a prepared folder (or any causal LM id/path) and refuse one without a chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    require_chat_template(tokenizer, path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model, tokenizer
