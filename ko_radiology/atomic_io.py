"""Writes that land whole or not at all: an interrupted run never leaves a half-written model, build or file."""

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def replace_dir(folder: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp_dir)` beside `folder`, then swap the result into place."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        write(tmp_dir)
        if folder.exists():
            shutil.rmtree(folder)
        tmp_dir.rename(folder)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return folder


def write_text_atomically(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}-"
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=prefix, delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)
    return path
