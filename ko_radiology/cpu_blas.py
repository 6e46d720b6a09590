"""MKL's fast kernels on AMD CPUs: load a one-function shim before torch.

PyTorch's x86 wheels multiply float32 matrices with Intel MKL, and MKL picks its kernels by CPU *vendor*: on an AMD
CPU it runs a generic path instead of the AVX2/FMA kernels the CPU has. On a 2-core AMD EPYC (AVX2) the Gemma 3 270M
head (249 x 640 by 640 x 262,144) took 1.50 s instead of 0.81 s, and the CPU recipe trains at 1.23x the tokens/s with
the shim (`bench/bench_mkl_vendor.py`, median of 3 alternating runs). MKL asks one exported function,
`mkl_serv_intel_cpu_true`, whether the CPU is Intel's; a shared library defining it to answer yes, loaded into the
global symbol scope before torch, makes MKL choose its kernels by the CPU's features instead. This is the community's
known MKL-on-AMD workaround; the products are the same (tests/test_cpu_blas.py), only faster.

The library is built once with the system C compiler into the cache. Off Linux, on other vendors, without a compiler,
after torch was imported, or with `KO_RADIOLOGY_MKL_SHIM=0`, nothing is loaded and the reason is returned.
"""

import ctypes
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ko_radiology.cache import cache_dir
from ko_radiology.hardware import cpu_vendor

SHIM_SOURCE = "int mkl_serv_intel_cpu_true(void) { return 1; }\n"
SWITCH = "KO_RADIOLOGY_MKL_SHIM"
LIBRARY_NAME = "mkl_vendor_shim.so"
LOADED = "MKL vendor shim loaded: MKL picks its kernels by this AMD CPU's features"


def load_mkl_vendor_shim() -> str | None:
    """Load the shim on an AMD CPU and say what was done, in words, for the run's log; None elsewhere."""
    if sys.platform != "linux" or cpu_vendor() != "AuthenticAMD":
        return None
    if os.environ.get(SWITCH, "1") == "0":
        return f"MKL vendor shim off ({SWITCH}=0): MKL runs its generic kernels on this AMD CPU"
    if LIBRARY_NAME in Path("/proc/self/maps").read_text():  # an earlier call in this process loaded it
        return LOADED
    if "torch" in sys.modules:
        return "MKL vendor shim not loaded: torch was imported first"
    try:
        ctypes.CDLL(str(built_shim()), mode=os.RTLD_GLOBAL)
    except (OSError, subprocess.CalledProcessError) as error:  # no compiler, read-only cache, a damaged library
        return f"MKL vendor shim not loaded ({error}): MKL runs its generic kernels on this AMD CPU"
    return LOADED


def built_shim() -> Path:
    """The shim's shared library in the cache, compiled on first use (raises OSError without a C compiler)."""
    library = cache_dir() / LIBRARY_NAME
    if library.is_file():
        return library
    compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc")]  # CC="ccache gcc"
    if compiler[0] is None:
        raise OSError("no C compiler found; install gcc or set CC")
    library.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=library.parent) as build:
        source, built = Path(build) / "shim.c", Path(build) / library.name
        source.write_text(SHIM_SOURCE)
        subprocess.run([*compiler, "-shared", "-fPIC", "-O2", "-o", str(built), str(source)], check=True)
        os.replace(built, library)  # whole or absent, also when two processes build it at once
    return library
