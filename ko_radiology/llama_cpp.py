"""llama.cpp, from the one source every machine of the project reaches: the pinned `llama-cpp-python` sdist on PyPI.

    python -m ko_radiology.llama_cpp fetch     # the sources: llama.cpp's GGUF converter and its gguf-py (~1 min)
    python -m ko_radiology.llama_cpp build     # ... and llama-server, llama-bench, llama-quantize (~20 min, 2 cores)
    python -m ko_radiology.llama_cpp status    # what is there, where, and why not what is missing
    python -m ko_radiology.llama_cpp path llama-server   # one program's path (exit 2, saying why, if not built)

The sdist's `vendor/llama.cpp` is llama.cpp at one commit: its own converter (`convert_hf_to_gguf.py`, which puts the
`gguf-py` beside it on its path) and the C++ sources. The binaries target a portable ISA level, never `-march=native`
(a native build died with "Illegal instruction" on a VM), and live in the cache folder (`ko_radiology.cache`) under
the version and the level. Fetching and building hold a lock, so two processes never build at once, and land
atomically: a run killed mid-way leaves nothing that counts as done, and the next build resumes the compile.
"""

import argparse
import fcntl
import json
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ko_radiology.atomic_io import replace_dir, write_text_atomically
from ko_radiology.cache import cache_dir
from ko_radiology.cli import EXIT_FAILED, run_cli
from ko_radiology.hardware import cpu_flags
from ko_radiology.processes import Service, ServiceError, stop_with_parent

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
"""The sdist whose vendored llama.cpp converts and serves: one pin for the converter, gguf-py and the binaries."""
BINARIES = ("llama-server", "llama-bench", "llama-quantize")
BUILD_JOBS = 2
"""Parallel compile jobs: the project's machines have 2 cores, and each C++ job of the server takes ~1 GB."""
SOURCE_INFO = "source.json"
BUILD_INFO = "build.json"
FETCH_COMMAND = "python -m ko_radiology.llama_cpp fetch"
BUILD_COMMAND = "python -m ko_radiology.llama_cpp build"
COMMON_CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # self-contained binaries, so they work after the move out of the build tree
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_OPENSSL=OFF",  # no model downloads: the project serves files it made
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # would fetch the web UI from the Hub at build time; the API needs none
    "-DGGML_CCACHE=OFF",
)


@dataclass(frozen=True)
class IsaLevel:
    """A CPU instruction-set level the binaries are compiled for, and the CPU flags they then need."""

    name: str
    cmake_flags: tuple[str, ...]
    cpu_flags: tuple[str, ...]
    description: str


X86_64_V3_FLAGS = (
    "-DGGML_NATIVE=OFF",  # never -march=native: a native build died with "Illegal instruction" on a VM
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
)
X86_64_V3_CPU = ("avx", "avx2", "fma", "f16c", "bmi2")
ISA_LEVELS = {
    level.name: level
    for level in (
        IsaLevel(
            "x86-64-v3",
            X86_64_V3_FLAGS,
            X86_64_V3_CPU,
            "AVX2/FMA/F16C: every x86-64 server CPU since 2013-2015 (Haswell, Zen)",
        ),
        IsaLevel(
            "x86-64-v4",
            X86_64_V3_FLAGS + ("-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX512_BF16=ON"),
            X86_64_V3_CPU + ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16"),
            "AVX-512 with VNNI and BF16: Cooper Lake, Sapphire Rapids and later Xeons, Zen 4 and later",
        ),
        IsaLevel(
            "baseline",
            ("-DGGML_NATIVE=OFF", "-DGGML_SSE42=OFF", "-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF")
            + ("-DGGML_F16C=OFF", "-DGGML_BMI2=OFF"),
            (),
            "the architecture's baseline: runs anywhere, slowly; for CPUs without AVX2 and non-x86 machines",
        ),
    )
}


def default_isa() -> str:
    """x86-64-v3 where the machine is x86-64 and has its flags, else the baseline."""
    machine_is_x86 = platform.machine().lower() in ("x86_64", "amd64")
    return "x86-64-v3" if machine_is_x86 and set(X86_64_V3_CPU) <= cpu_flags() else "baseline"


def llama_cpp_cache() -> Path:
    return cache_dir() / "llama.cpp"


def source_dir() -> Path:
    """The vendored llama.cpp tree (converter, gguf-py, C++ sources); it exists only once fully unpacked."""
    return llama_cpp_cache() / f"src-{LLAMA_CPP_PYTHON_VERSION}"


def bin_dir(isa: str) -> Path:
    """The built binaries for `isa`; the folder exists only once every binary in BINARIES is in it."""
    return llama_cpp_cache() / f"bin-{LLAMA_CPP_PYTHON_VERSION}-{isa}"


def work_dir(isa: str) -> Path:
    """The cmake build tree: kept when a build stops, so the next one resumes the compile; removed once done."""
    return llama_cpp_cache() / f"work-{LLAMA_CPP_PYTHON_VERSION}-{isa}"


@contextmanager
def cache_lock() -> Iterator[None]:
    """One fetch or build at a time per cache folder: a second process waits, then finds the work done. The kernel
    releases the lock however its holder ends (kill -9 too)."""
    llama_cpp_cache().mkdir(parents=True, exist_ok=True)
    with (llama_cpp_cache() / ".lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Another process is fetching or building llama.cpp in {llama_cpp_cache()}; waiting for it ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        remove_stale_staging()
        yield


def remove_stale_staging() -> None:
    """Staging folders (`.NAME-*`, see `atomic_io.replace_dir`) of a fetch or build that was killed; called under the
    lock, so none of them belongs to a running one."""
    for staging in llama_cpp_cache().glob(".*-*"):
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)


def source_info() -> dict:
    return json.loads((source_dir() / SOURCE_INFO).read_text(encoding="utf-8"))


def converter_version() -> str:
    """What made a GGUF, for its model card: `llama.cpp 0c1e570 (vendored in llama-cpp-python 0.3.36)`."""
    info = source_info()
    return f"llama.cpp {info['llama_cpp_commit'][:7]} (vendored in llama-cpp-python {info['llama_cpp_python']})"


def fetch() -> Path:
    """The unpacked sources, downloaded and unpacked once (later calls return at once)."""
    if (source_dir() / SOURCE_INFO).is_file():
        return source_dir()
    with cache_lock():
        if not (source_dir() / SOURCE_INFO).is_file():
            started = time.monotonic()
            replace_dir(source_dir(), unpack_sdist)
            print(f"llama.cpp sources in {source_dir()} ({time.monotonic() - started:.0f} s).")
    return source_dir()


def unpack_sdist(out_dir: Path) -> None:
    """Download the sdist with pip into `out_dir` and unpack its `vendor/llama.cpp` there, with the commit it is."""
    print(f"Downloading the llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} sdist from PyPI (~77 MB) ...", flush=True)
    requirement = f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "llama-cpp-python"]
    result = subprocess.run(
        [*command, requirement, "--dest", str(out_dir)], capture_output=True, text=True, preexec_fn=stop_with_parent
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip could not download {requirement}:\n{(result.stderr or result.stdout)[-2000:]}")
    sdist = next(out_dir.glob("llama_cpp_python-*.tar.gz"))
    vendor = f"{sdist.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
    head = f"{sdist.name.removesuffix('.tar.gz')}/.git/modules/vendor/llama.cpp/HEAD"
    with tarfile.open(sdist) as archive:
        commit = archive.extractfile(head).read().decode().strip()
        members = []
        for member in archive.getmembers():
            if member.name.startswith(vendor) and member.name != f"{vendor}.git":  # .git: a pointer to nothing here
                member.name = member.name.removeprefix(vendor)
                members.append(member)
        archive.extractall(out_dir, members=members, filter="data")
    sdist.unlink()
    info = {"llama_cpp_python": LLAMA_CPP_PYTHON_VERSION, "llama_cpp_commit": commit}
    (out_dir / SOURCE_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def converter_script() -> Path:
    """llama.cpp's `convert_hf_to_gguf.py` (fetched if need be); run it with this Python, which has torch."""
    return fetch() / "convert_hf_to_gguf.py"


@dataclass(frozen=True)
class BuiltBinary:
    """A llama.cpp program: `path` where it is built and runs on this CPU, else None and `reason` says why not and
    how to get it."""

    name: str
    path: Path | None
    reason: str | None = None


def binary(name: str, isa: str | None = None) -> BuiltBinary:
    """Where `name` (one of BINARIES) is built for `isa` (default: `default_isa()`), or why it is not usable here."""
    isa = isa or default_isa()
    if name not in BINARIES:
        raise ValueError(f"Unknown llama.cpp program {name!r}; the build makes {', '.join(BINARIES)}.")
    path = bin_dir(isa) / name
    if not path.is_file():
        return BuiltBinary(name, None, f"{name} is not built for {isa} in {bin_dir(isa)}; run `{BUILD_COMMAND}`.")
    if missing := [flag for flag in ISA_LEVELS[isa].cpu_flags if flag not in cpu_flags()]:
        return BuiltBinary(name, None, f"{name} is built for {isa}, and this CPU lacks {', '.join(missing)}.")
    return BuiltBinary(name, path)


def server_service(gguf_path: str | Path, port: int, log_dir: Path, slots: int = 1, *extra_args: str) -> Service:
    """`llama-server` for one GGUF on loopback: the OpenAI API at `/v1` with the file's chat template (`--jinja`) and
    `slots` sequences decoded in parallel; start it with `ko_radiology.processes.start`, then `wait_ready`."""
    server = binary("llama-server")
    if server.path is None:
        raise ServiceError(server.reason)
    command = [str(server.path), "--model", str(gguf_path), "--host", "127.0.0.1", "--port", str(port), "--jinja"]
    command += ["--parallel", str(slots), *extra_args]
    return Service(
        "llama-server", command, {}, f"http://127.0.0.1:{port}/health", log_dir / f"llama-server-{port}.log"
    )


GROUP_WRAPPER = ("sh", "-c", 'trap "trap - TERM; kill -TERM 0" TERM; "$@" & wait $!', "sh")
"""Runs a command in a process group of its own that SIGTERM ends whole: cmake does not pass a signal on to make and
the compilers, so the wrapper ends them all."""


def run_logged(command: list[str], log_path: Path, echo: Callable[[str], bool] = lambda line: False) -> None:
    """Run one step of a build or conversion with its output appended to `log_path` (line by line: `tail -f` shows
    it), echoing the lines `echo` picks as progress. If this process dies (kill -9 too), the step and everything it
    started get SIGTERM, so no compile outlives the lock. A failure raises RuntimeError with the end of the log."""
    with log_path.open("a", encoding="utf-8", buffering=1) as log:
        log.write(f"$ {' '.join(command)}\n")
        process = subprocess.Popen(
            [*GROUP_WRAPPER, *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=stop_with_parent,
        )
        try:
            for line in process.stdout:
                log.write(line)
                if echo(line):
                    print(f"  {line.strip()}", flush=True)
        finally:  # Ctrl-C or an error here: the step stops too
            if process.poll() is None:
                process.terminate()
    if process.wait() != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"`{' '.join(command[:3])} ...` failed ({process.returncode}). End of {log_path}:\n{tail}")


def build(isa: str | None = None, jobs: int = BUILD_JOBS) -> Path:
    """Fetch the sources and build BINARIES for `isa` (default: `default_isa()`) once; returns their folder. Prints
    each step and how long it took."""
    isa = isa or default_isa()
    if isa not in ISA_LEVELS:
        raise ValueError(f"Unknown ISA level {isa!r}; choose one of {', '.join(ISA_LEVELS)}.")
    if (bin_dir(isa) / BUILD_INFO).is_file():
        print(f"llama.cpp is already built for {isa} in {bin_dir(isa)}.")
        return bin_dir(isa)
    source = fetch()
    with cache_lock():
        if not (bin_dir(isa) / BUILD_INFO).is_file():
            compile_binaries(source, isa, jobs)
    return bin_dir(isa)


def compile_binaries(source: Path, isa: str, jobs: int) -> None:
    """Configure and compile in `work_dir(isa)`, then move the binaries into `bin_dir(isa)` in one step."""
    if missing := [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]:
        raise ValueError(
            f"Building llama.cpp needs {' and '.join(missing)}: `apt-get install cmake g++` (or `pip install cmake`)."
        )
    level, work = ISA_LEVELS[isa], work_dir(isa)
    work.mkdir(parents=True, exist_ok=True)
    configure = ["cmake", "-S", str(source), "-B", str(work), *COMMON_CMAKE_FLAGS, *level.cmake_flags]
    compile_ = ["cmake", "--build", str(work), "--config", "Release", "-j", str(jobs), "--target", *BINARIES]
    print(f"Building {', '.join(BINARIES)} for {isa} ({level.description}) with {jobs} jobs; log: {work}/build.log")
    started = time.monotonic()
    for step in (configure, compile_):
        run_logged(step, work / "build.log", echo=lambda line: "Built target" in line)
    seconds = time.monotonic() - started

    def install(out_dir: Path) -> None:
        for name in BINARIES:
            shutil.copy2(work / "bin" / name, out_dir / name)
        info = {**source_info(), "isa": isa, "cmake_flags": [*COMMON_CMAKE_FLAGS, *level.cmake_flags]}
        write_text_atomically(out_dir / BUILD_INFO, json.dumps({**info, "build_seconds": round(seconds)}, indent=2))

    replace_dir(bin_dir(isa), install)
    shutil.rmtree(work)
    print(f"Built llama.cpp for {isa} in {seconds / 60:.1f} min: {bin_dir(isa)}")


def status(isa: str | None = None) -> str:
    """One line per part: the sources, then each binary, with its path or why it is not there."""
    isa = isa or default_isa()
    fetched = (source_dir() / SOURCE_INFO).is_file()
    lines = [f"sources: {converter_version() if fetched else f'not fetched; run `{FETCH_COMMAND}`'} ({source_dir()})"]
    for name in BINARIES:
        found = binary(name, isa)
        lines.append(f"{name}: {found.path or found.reason}")
    if (bin_dir(isa) / BUILD_INFO).is_file():
        built = json.loads((bin_dir(isa) / BUILD_INFO).read_text(encoding="utf-8"))
        lines.append(f"built for {isa} in {built['build_seconds'] / 60:.1f} min")
    return "\n".join(lines)


def llama_cpp_command(args: list[str]) -> int | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download and unpack the sources (the GGUF converter); idempotent")
    for name, help_text in (("build", "fetch, then build the binaries; idempotent"), ("status", "what is there")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--isa", choices=list(ISA_LEVELS), default=None, help=f"default here: {default_isa()}")
    path = commands.add_parser("path", help="print where a built program is")
    path.add_argument("name", choices=BINARIES)
    path.add_argument("--isa", choices=list(ISA_LEVELS), default=None)
    parsed = parser.parse_args(args)
    if parsed.command == "path":
        found = binary(parsed.name, parsed.isa)
        if found.path is None:
            raise FileNotFoundError(found.reason)
        print(found.path)
        return None
    try:
        if parsed.command == "fetch":
            source = fetch()
            print(f"{converter_version()} in {source}")
        elif parsed.command == "build":
            build(parsed.isa)
        else:
            print(status(parsed.isa))
    except RuntimeError as error:  # pip or the compiler failed: its output, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


def main(args: list[str] | None = None) -> int:
    return run_cli(llama_cpp_command, args)


if __name__ == "__main__":
    sys.exit(main())
