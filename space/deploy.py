"""Assemble the Hub Space folder, and create or update the Space from it.

```bash
python -m space.deploy --repo-id org/ko-radiology-gpt --endpoint https://xyz.endpoints.huggingface.cloud/v1 \
    --allow-remote-endpoint --no-retention-confirmed \
    --adapter org/ko-radiology-qwen2.5-7b-qlora --dataset org/ko-cxr-qa --dry-run --out out/space
(cd out/space && KO_RADIOLOGY_...=... python app.py)   # what the Hub will run, on your machine (the dry run prints it)
python -m space.deploy --repo-id org/ko-radiology-gpt --endpoint ... --adapter ...   # push (HF_TOKEN from the env)
```

The folder holds `app.py`, the Space card (`README.md` with front matter), a short pinned `requirements.txt`, and the
modules of this repository that `app.py` imports, found by following its imports: the Space runs the same code as the
repository, copied at deploy time, never kept twice in git. Settings become Space variables; the token is a secret
you add yourself (the command names it and never reads it into the folder).
"""

import argparse
import ast
import importlib.metadata
import os
import re
import shutil
import sys
from pathlib import Path

import yaml

from ko_radiology.llm import DataUseError
from ko_radiology.llm.transport import guard
from space.backends import SPACE_DATA_USE_SETTINGS, client_config
from space.config import ENV_PREFIX, SpaceConfig, add_data_use_arguments, data_use_values

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = REPO_ROOT / "space" / "app.py"
CARD = REPO_ROOT / "space" / "README.md"
LOCAL_PACKAGES = ("space", "ko_radiology", "dataset_builder")
PACKAGE_DATA = ("ko_radiology/chat_template.jinja", "ko_radiology/sample")
"""Files the copied modules read at run time: the chat template, and the sample (examples, glossary)."""
LOCAL_BACKEND_DISTRIBUTIONS = ("torch", "transformers", "peft", "accelerate")
"""Imported lazily by the local backend only, so an endpoint Space installs no torch."""
SDK_PROVIDED = ("gradio",)
"""Installed by the Hub from `sdk_version`; listing it again in requirements.txt could pin a second version."""
SECRETS = {"HF_TOKEN": "token for the endpoint (and for the adapter download with the local backend)"}


def local_module_files(entry: Path) -> list[Path]:
    """Every repository module `entry` imports, directly or not, at module level or inside functions, plus the
    `__init__.py` of each package on the way: what a copy of `entry` needs to run anywhere."""
    found: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        for module in _imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            if module.split(".")[0] in LOCAL_PACKAGES:
                todo += _module_paths(module)
    return sorted(found - {entry})


def _imported_modules(tree: ast.AST) -> set[str]:
    """`import a.b` gives a.b; `from a.b import c` gives a.b and a.b.c (c may be a submodule)."""
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def _module_paths(module: str) -> list[Path]:
    parts = module.split(".")
    paths = [REPO_ROOT.joinpath(*parts[:depth], "__init__.py") for depth in range(1, len(parts) + 1)]
    paths.append(REPO_ROOT.joinpath(*parts).with_suffix(".py"))
    return [path for path in paths if path.is_file()]


def third_party_imports(files: list[Path]) -> set[str]:
    """Top-level names imported at module level (lazy imports inside functions belong to optional paths)."""
    names = set()
    for path in files:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name not in LOCAL_PACKAGES}


def pinned_requirements(imports: set[str], extra_distributions: tuple[str, ...] = ()) -> list[str]:
    """`name==version` of each distribution that provides `imports`, at the version installed here: the one the
    tests ran with (requirements.txt pins it, or pins what pulled it in)."""
    providers = importlib.metadata.packages_distributions()
    wanted = {dist for name in imports for dist in providers.get(name, [name])} | set(extra_distributions)
    wanted = {_normal(dist) for dist in wanted} - set(SDK_PROVIDED)
    try:
        return sorted(f"{dist}=={importlib.metadata.version(dist)}" for dist in wanted)
    except importlib.metadata.PackageNotFoundError as error:
        raise ValueError(f"The Space imports {error.name}, which is not installed here; run `make setup`.") from None


def _normal(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def space_card(repo_id: str, models: list[str], datasets: list[str]) -> str:
    """`space/README.md` with its front matter completed: the pinned gradio, and links to the model and data."""
    _, front, body = CARD.read_text(encoding="utf-8").split("---\n", 2)
    meta = yaml.safe_load(front)
    meta["sdk_version"] = importlib.metadata.version("gradio")
    meta["models"], meta["datasets"] = models, datasets
    meta = {key: value for key, value in meta.items() if value not in ([], None)}
    return f"---\n{yaml.safe_dump(meta, allow_unicode=True, sort_keys=False)}---\n{body}".replace("{repo_id}", repo_id)


def space_variables(args: argparse.Namespace) -> dict[str, str]:
    """The Space variables (not secrets) that configure the app; checked by building the app's own config."""
    values = {"backend": args.backend, "endpoint": args.endpoint, "model": args.model or args.adapter}
    values |= data_use_values(args)
    if args.backend == "local":
        values |= {"model": args.model, "adapter": args.adapter, "endpoint": None}
    values = {name: value for name, value in values.items() if value}
    config = SpaceConfig(**values)  # the same validation the Space will run at start
    if config.backend == "endpoint":
        try:
            guard(client_config(config))  # and the same data-use guard
        except DataUseError as error:
            raise ValueError(f"{error} {SPACE_DATA_USE_SETTINGS}") from None
    return {ENV_PREFIX + name.upper(): str(value) for name, value in values.items()}


def assemble(out: Path, args: argparse.Namespace) -> Path:
    """Write the Space folder to `out` (replacing it) and return it."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    modules = local_module_files(APP)
    shutil.copy2(APP, out / "app.py")
    for path in modules:
        (out / path.relative_to(REPO_ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / path.relative_to(REPO_ROOT))
    for name in PACKAGE_DATA:
        source = REPO_ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, out / name)
    extra = LOCAL_BACKEND_DISTRIBUTIONS if args.backend == "local" else ()
    requirements = pinned_requirements(third_party_imports([APP, *modules]), extra)
    (out / "requirements.txt").write_text("\n".join(requirements) + "\n")
    models = [name for name in (args.adapter, args.model) if name and _is_hub_id(name)]
    datasets = [args.dataset] if args.dataset else []
    (out / "README.md").write_text(space_card(args.repo_id, models, datasets), encoding="utf-8")
    return out


def _is_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", name)) and not Path(name).exists()


def push(out: Path, args: argparse.Namespace, variables: dict[str, str]) -> str:
    """Create the Space if needed, upload the folder, set the variables; the token only from the environment."""
    from huggingface_hub import HfApi

    if not os.environ.get("HF_TOKEN"):
        raise ValueError("HF_TOKEN is not set; export a write token (never pass it on the command line).")
    api = HfApi(token=os.environ["HF_TOKEN"])
    api.create_repo(args.repo_id, repo_type="space", space_sdk="gradio", private=args.private, exist_ok=True)
    api.upload_folder(folder_path=str(out), repo_id=args.repo_id, repo_type="space", commit_message="Deploy Space")
    for key, value in variables.items():
        api.add_space_variable(args.repo_id, key, value)
    return f"https://huggingface.co/spaces/{args.repo_id}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo-id", required=True, help="the Space, e.g. org/ko-radiology-gpt")
    parser.add_argument("--backend", default="endpoint", choices=("endpoint", "local"))
    parser.add_argument("--endpoint", help="Messages API base URL (TGI, vLLM, an Inference Endpoint), for endpoint")
    parser.add_argument("--model", help="model name sent per request (endpoint) or base model (local)")
    parser.add_argument(
        "--adapter", help="the fine-tuned LoRA adapter on the Hub; the endpoint's model name by default"
    )
    add_data_use_arguments(parser)
    parser.add_argument("--dataset", help="the dataset on the Hub, linked from the card")
    parser.add_argument("--out", default="out/space", help="where the Space folder is assembled")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--dry-run", action="store_true", help="assemble and print; create or upload nothing")
    args = parser.parse_args(argv)
    if args.backend == "endpoint" and not args.endpoint:
        parser.error("--backend endpoint needs --endpoint URL.")
    if args.backend == "local" and not (args.model or args.adapter):
        parser.error("--backend local needs --model (a base model or merged folder) or --adapter.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        variables = space_variables(args)
        out = assemble(Path(args.out), args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Space folder: {out}")
    print("Space variables:\n" + "\n".join(f"  {key}={value}" for key, value in variables.items()))
    print("Secrets to add in the Space settings:\n" + "\n".join(f"  {key}: {why}" for key, why in SECRETS.items()))
    if args.dry_run:
        settings = " ".join(f"{key}={value}" for key, value in variables.items())
        print(f"Dry run: nothing uploaded. Try it: (cd {out} && {settings} python app.py)")
        return 0
    print(f"Space updated: {push(out, args, variables)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
