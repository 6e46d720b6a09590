"""Assemble the Hub Space folder, and create or update the Space from it.

```bash
python -m space.deploy --repo-id org/ko-radiology-gpt --endpoint https://xyz.endpoints.huggingface.cloud/v1 \
    --allow-remote-endpoint --no-retention-confirmed \
    --adapter org/ko-radiology-qwen2.5-7b-qlora --dataset org/ko-cxr-qa --dry-run --out out/space
(cd out/space && KO_RADIOLOGY_...=... python app.py)   # what the Hub will run, on your machine (the dry run prints it)
python -m space.deploy --repo-id org/ko-radiology-gpt --endpoint ... --adapter ...   # push (HF_TOKEN from the env)
```

The folder holds `app.py` (this package's own, copied), the Space card (`README.md` with front matter) and a
`requirements.txt` of one line: this project at this version with its `[space]` extra (`[space,local]` for the local
backend), from its release tag or from `--package-url`. The Hub installs that, so the Space runs the installed package,
the same code as here. Settings become Space variables; the token is a secret you add yourself (the command names it
and never reads it into the folder).
"""

import argparse
import importlib.metadata
import os
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from ko_radiology import SOURCE, requirement
from ko_radiology.cli import run_cli
from ko_radiology.llm import DataUseError
from ko_radiology.llm.transport import guard
from space.backends import SPACE_DATA_USE_SETTINGS, client_config
from space.config import ENV_PREFIX, SpaceConfig, add_data_use_arguments, data_use_values

APP = Path(__file__).with_name("app.py")
CARD = Path(__file__).with_name("README.md")
EXTRAS = {"endpoint": ("space",), "local": ("space", "local")}
"""The project's extras each backend installs: gradio and the app's client; torch and peft only for local models."""
SECRETS = {"HF_TOKEN": "token for the endpoint (and for the adapter download with the local backend)"}


def space_requirements(backend: str, package_url: str) -> str:
    """The Space's requirements.txt: this project with the backend's extras, from `package_url` (a pip URL: the
    release tag by default, or a commit, a fork or a wheel). gradio comes from the card's `sdk_version`, which the
    `[space]` extra's range admits, so pip keeps it."""
    url = urlsplit(package_url.removeprefix("git+"))
    if url.scheme not in ("https", "http") or not url.hostname:
        raise ValueError(
            f"--package-url {package_url!r} is no URL the Hub can install from; pass git+https://HOST/REPO@REF or "
            "https://HOST/PATH/NAME.whl."
        )
    if url.username or url.password:
        raise ValueError(
            "--package-url carries credentials (user:token@), and the Space's requirements.txt is public; pass a "
            "URL anyone may read."
        )
    return requirement(*EXTRAS[backend], source=package_url) + "\n"


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
    config = SpaceConfig.from_values(values)  # the same validation the Space will run at start
    if config.backend == "endpoint":
        try:
            guard(client_config(config))  # and the same data-use guard
        except DataUseError as error:
            raise ValueError(f"{error} {SPACE_DATA_USE_SETTINGS}") from None
    return {ENV_PREFIX + name.upper(): str(value) for name, value in values.items()}


def assemble(out: Path, args: argparse.Namespace) -> Path:
    """Write the Space folder to `out` (replacing it) and return it."""
    requirements = space_requirements(args.backend, args.package_url)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy2(APP, out / "app.py")
    (out / "requirements.txt").write_text(requirements)
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
    parser.add_argument(
        "--package-url",
        default=SOURCE,
        help=f"where the Space pip-installs this project (default: this version's release tag, {SOURCE}); "
        "e.g. git+https://github.com/you/fork@COMMIT or the URL of a wheel",
    )
    parser.add_argument("--out", default="out/space", help="where the Space folder is assembled")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--dry-run", action="store_true", help="assemble and print; create or upload nothing")
    args = parser.parse_args(argv)
    if args.backend == "endpoint" and not args.endpoint:
        parser.error("--backend endpoint needs --endpoint URL.")
    if args.backend == "local" and not (args.model or args.adapter):
        parser.error("--backend local needs --model (a base model or merged folder) or --adapter.")
    return args


def deploy_command(argv: list[str]) -> int:
    args = parse_args(argv)
    variables = space_variables(args)
    out = assemble(Path(args.out), args)
    print(f"Space folder: {out}")
    print("Space variables:\n" + "\n".join(f"  {key}={value}" for key, value in variables.items()))
    print("Secrets to add in the Space settings:\n" + "\n".join(f"  {key}: {why}" for key, why in SECRETS.items()))
    if args.dry_run:
        settings = " ".join(f"{key}={value}" for key, value in variables.items())
        print(f"Dry run: nothing uploaded. Try it: (cd {out} && {settings} python app.py)")
        return 0
    print(f"Space updated: {push(out, args, variables)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(deploy_command, argv)


if __name__ == "__main__":
    sys.exit(main())
