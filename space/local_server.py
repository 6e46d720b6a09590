"""Which local server answers for a model folder in `space.demo`, and why: llama.cpp's `llama-server` on the model's
GGUF where it is built, else `transformers serve`.

llama-server decodes a small model several times faster on the same CPU and answers several visitors at once
(parallel slots; `bench/bench_serve.py` measures both); `transformers serve` needs nothing beyond the Python
environment, so it is what a fresh clone gets until `make llama-cpp` has built llama-server. The GGUF (Q8_0) is made
by `python -m training.export --format gguf` into a folder beside the model, once: later starts reuse it until the
model's weights or tokenizer are newer.
"""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ko_radiology import llama_cpp
from ko_radiology.processes import Service, model_server
from space.config import DEFAULT_ENDPOINT_CONTEXT_TOKENS

SERVERS = ("auto", "llama.cpp", "transformers")
"""`--server` of `space.demo`: auto takes llama.cpp where it is built and a GGUF can be had, else transformers."""
GGUF_TYPE = "q8_0"
"""What llama-server serves: a quarter of float32's bytes per token, made by the converter (no llama-quantize)."""
MODEL_FILES = ("config.json", "*.safetensors", "tokenizer*", "chat_template.jinja")
"""The files a GGUF is made from: one newer than the GGUF makes it stale (a card rendered again does not)."""


@dataclass(frozen=True)
class LocalServer:
    """The server to start, the model name requests carry, how many answers it decodes at once (None: one at a time,
    the Space's default queue), and the sentence `space.demo` prints about the choice."""

    service: Service
    model: str
    slots: int | None
    why: str


def gguf_dir_beside(model_dir: Path) -> Path:
    """The default home of a model's GGUF: `out/adapters/KEY/merged` → `out/adapters/KEY/merged-gguf`."""
    return model_dir.with_name(f"{model_dir.name}-gguf")


def fresh_gguf(gguf_dir: Path, model_dir: Path) -> Path | None:
    """The one `.gguf` in `gguf_dir` if it is newer than every file it is made from in `model_dir`, else None."""
    found = sorted(gguf_dir.glob("*.gguf")) if gguf_dir.is_dir() else []
    if len(found) != 1:
        return None
    sources = [path.stat().st_mtime for pattern in MODEL_FILES for path in model_dir.glob(pattern)]
    return found[0] if found[0].stat().st_mtime >= max(sources, default=0.0) else None


def export_gguf(model_dir: Path, gguf_dir: Path, gguf_type: str = GGUF_TYPE) -> Path | None:
    """Run `python -m training.export MODEL --format gguf` into `gguf_dir` (about a minute for 270M parameters on 2
    cores), its output shown; the GGUF it wrote, or None if it failed (its error is printed above)."""
    command = [sys.executable, "-m", "training.export", str(model_dir), "--out", str(gguf_dir)]
    command += ["--format", "gguf", "--gguf-type", gguf_type]
    print(f"Exporting {model_dir} as GGUF {gguf_type.upper()} for llama-server (once): {' '.join(command[1:])}")
    if subprocess.run(command).returncode != 0:
        return None
    return fresh_gguf(gguf_dir, model_dir)


def gguf_to_serve(model_dir: Path, gguf_dir: Path) -> tuple[Path | None, str]:
    """The GGUF llama-server can serve for `model_dir` (found fresh, else exported now) and how it was had; or None
    and why llama-server cannot serve it here."""
    server = llama_cpp.binary("llama-server")
    if server.path is None:
        return None, f"{server.reason.rstrip('.')} (or `make llama-cpp`; it can build while the demo trains)."
    if (gguf := fresh_gguf(gguf_dir, model_dir)) is not None:
        return gguf, "exported before"
    if (gguf := export_gguf(model_dir, gguf_dir)) is not None:
        return gguf, "exported now"
    return None, f"exporting {model_dir} to GGUF in {gguf_dir} failed (its error is above)."


def llama_server(gguf: Path, port: int, log_dir: Path, slots: int) -> Service:
    """llama-server on `gguf`, answering to the file's path as model name, each slot with the context the Space
    assumes of an endpoint."""
    context = ["--ctx-size", str(slots * DEFAULT_ENDPOINT_CONTEXT_TOKENS)]
    return llama_cpp.server_service(gguf, port, log_dir, slots, "--alias", str(gguf), *context)


def choose_local_server(
    model_dir: Path, server: str, gguf_dir: Path | None, port: int, log_dir: Path, dtype: str, slots: int
) -> LocalServer:
    """The server for `model_dir` as `--server` asks: llama-server where it is built and a GGUF can be had, otherwise
    (and for `transformers`) `transformers serve` in `dtype`; `why` says which and why."""
    if server not in SERVERS:
        raise ValueError(f"--server {server} is not one of {', '.join(SERVERS)}.")
    if server != "transformers":
        gguf, how = gguf_to_serve(model_dir, gguf_dir or gguf_dir_beside(model_dir))
        if gguf is not None:
            why = f"Serving with llama.cpp's llama-server ({slots} parallel slots) on {gguf} ({how})."
            return LocalServer(llama_server(gguf, port, log_dir, slots), str(gguf), slots, why)
        asked = " instead of llama-server, asked for with --server llama.cpp" if server == "llama.cpp" else ""
        why = f"Serving with transformers serve{asked}: {how}"
    else:
        why = "Serving with transformers serve (--server transformers)."
    return LocalServer(model_server(str(model_dir), port, log_dir, dtype), str(model_dir), None, why)
