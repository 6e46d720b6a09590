"""How `eval.check` and `eval.compare` answer with a local model (`--backend`, `--gguf-type`, `--slots`): through
transformers, or through llama.cpp's `llama-server` on a GGUF of the model, which training's export makes once per
model into the cache.

`auto` takes llama.cpp's Q8_0 where llama-server is built here (`python -m ko_radiology.llama_cpp status`) and the
model is a local folder, else transformers, and says which: it was the fastest path measured
(`bench/bench_check_generation.py` on a 2-core AMD EPYC with native bf16: a check's answers 1.6x as fast as
transformers in bf16, batches of 8; transformers with batches of 16 1.2x, the f32 GGUF 1.2x), with its chrF++ against
the gold answers within the CI of the unquantized f32 GGUF's. The f32 GGUF is the one that gives transformers
float32's greedy answers (39 of 40 identical).

Answers are cached per question under the backend's settings (`ko_radiology.answer_cache`): a llama.cpp answer is
never served as a transformers one, nor an f32 GGUF's as a Q8_0 one.
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from ko_radiology import llama_cpp
from ko_radiology.answer_cache import AnswerGenerator, TransformersGenerator, model_fingerprint
from ko_radiology.cache import cache_dir
from ko_radiology.llama_cpp_answers import SLOTS, LlamaCppGenerator

BACKENDS = ("auto", "transformers", "llama.cpp")
GGUF_TYPES = ("f32", "bf16", "q8_0")
"""f32 and bf16 are unquantized (the same greedy answers as transformers in that dtype, up to float rounding); Q8_0
is quantized (quality within the CIs of the check, bench/bench_check_generation.py)."""
DEFAULT_GGUF_TYPE = "q8_0"
MERGE_DTYPES = {"f32": "float32", "bf16": "bfloat16", "q8_0": "float32"}
"""The dtype an adapter is merged in before conversion: no rounding to bf16 on the way to an f32 or Q8_0 file."""


def gguf_exports_dir() -> Path:
    return cache_dir() / "gguf-exports"


def exported_gguf(path: str, gguf_type: str) -> Path:
    """The GGUF of the adapter or merged model in `path`, exported by `python -m training.export --format gguf` into
    the cache the first time it is asked for; a model retrained in the same folder (another fingerprint) replaces its
    earlier exports there."""
    model, files = model_fingerprint(path)
    model_digest = hashlib.sha256(model.encode()).hexdigest()[:12]
    files_digest = hashlib.sha256(json.dumps(files).encode()).hexdigest()[:12]
    model_dir = gguf_exports_dir() / f"{Path(model).name}-{model_digest}"
    out = model_dir / f"{files_digest}-{gguf_type}" / f"{Path(model).name}-gguf"
    if found := sorted(out.glob("*.gguf")):  # the export lands whole (training.export replaces its --out at the end)
        return found[0]
    for earlier in model_dir.glob("*") if model_dir.is_dir() else []:
        if not earlier.name.startswith(files_digest):
            shutil.rmtree(earlier)
    command = [sys.executable, "-m", "training.export", path, "--out", str(out), "--format", "gguf"]
    command += ["--gguf-type", gguf_type, "--dtype", MERGE_DTYPES[gguf_type]]
    print(f"Exporting {path} as GGUF {gguf_type.upper()} for llama.cpp (once per model): {' '.join(command[1:])}")
    if subprocess.run(command).returncode != 0:
        raise RuntimeError(f"`python -m training.export {path} ... --format gguf` failed; see its error above.")
    return next(out.glob("*.gguf"))


def choose_backend(backend: str, path: str) -> tuple[str, str]:
    """The backend `--backend` means for the model in `path`, and why."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend} is not one of {', '.join(BACKENDS)}.")
    if backend == "transformers":
        return backend, "--backend transformers"
    server = llama_cpp.binary("llama-server")
    if backend == "llama.cpp":
        if server.path is None:
            raise ValueError(f"--backend llama.cpp needs llama-server: {server.reason}")
        return backend, "--backend llama.cpp"
    if server.path is None:
        return "transformers", f"llama.cpp is not available ({server.reason})"
    if not Path(path).is_dir():
        return "transformers", f"{path} is not a local folder to convert to GGUF"
    return "llama.cpp", "llama-server is built here"


def local_generator(
    path: str,
    backend: str,
    gguf_type: str,
    slots: int = SLOTS,
    dtype: str | None = None,
    batch_size: int | None = None,
    reason: str | None = None,
) -> AnswerGenerator:
    """The answer cache's generator for `path` as the flags ask, announcing the backend and why (`reason` where the
    caller chose it, as eval.check does for the base); `dtype` and `batch_size` are transformers' (None: its
    defaults)."""
    if gguf_type not in GGUF_TYPES:
        raise ValueError(f"--gguf-type {gguf_type} is not one of {', '.join(GGUF_TYPES)}.")
    chosen, why = choose_backend(backend, path)
    why = reason or why
    if chosen == "llama.cpp" and backend == "auto":
        try:  # before any answer is keyed: an answer is stored under the backend that made it
            exported_gguf(path, gguf_type)
        except RuntimeError as error:
            chosen, why = "transformers", f"the GGUF export failed ({error})"
    if chosen == "llama.cpp":
        print(f"Answering with llama.cpp (GGUF {gguf_type.upper()}, {slots} slots): {why}.", flush=True)
        return LlamaCppGenerator(exported_gguf, gguf_type, slots)
    transformers = {"dtype": dtype, "batch_size": batch_size}
    generator = TransformersGenerator(**{name: value for name, value in transformers.items() if value is not None})
    print(f"Answering with transformers ({generator.dtype}, batches of {generator.batch_size}): {why}.", flush=True)
    return generator
