"""Upload a model folder to the Hub: the adapter (`training.sft --push_to_hub`), the merged model or the GGUF
(`training.export --push_to_hub`). The token comes from the environment (`HF_TOKEN` or `hf auth login`)."""

from pathlib import Path


def push_model_folder(folder: str | Path, repo_id: str, allow_patterns: list[str], private: bool | None = None) -> str:
    """Create the model repo `repo_id` if need be and upload the files of `folder` that `allow_patterns` select (never
    checkpoints or local bookkeeping) in one commit; returns the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        allow_patterns=allow_patterns,
        commit_message=f"Upload {Path(folder).name}",
    )
    return str(commit)
