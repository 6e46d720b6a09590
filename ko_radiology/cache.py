"""The project's cache folder: prepared models, generated answers, the MKL shim. `$KO_RADIOLOGY_CACHE`, default
`~/.cache/ko-radiology-gpt`."""

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("KO_RADIOLOGY_CACHE", Path.home() / ".cache" / "ko-radiology-gpt"))
