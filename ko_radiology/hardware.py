"""What this machine computes natively, and the one dtype policy built on it.

    python -m ko_radiology.hardware          # the CPU, native bf16, and the dtype each purpose gets here
    python -m ko_radiology.hardware serve    # just that dtype (what the Makefile merges for its local server in)

Every default dtype in the project comes from `default_dtype(purpose)`; an explicit `--dtype` still wins.
"""

import argparse
import platform
from pathlib import Path

NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of CPUs that compute bf16 natively; elsewhere bf16 matmuls are emulated, slower than float32."""

DTYPE_PURPOSES = {
    "train": "bf16 where the device computes it natively, float32 where bf16 would be emulated (slower)",
    "check": "as train, on the device the quality check generates on",
    "serve": "float32 always: the Space, local judge/generator servers and cached answers answer alike everywhere",
    "merge": "bfloat16 always: merged weights as base checkpoints ship; `make demo` merges in the serve dtype",
}
"""What each purpose gets, and why."""


def cpuinfo_field(name: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """Field `name` of the first CPU listed in `cpuinfo` (None where there is no such file, e.g. macOS)."""
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.partition(":")[0].strip() == name:
                return line.partition(":")[2].strip()
    return None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The feature flags of the first CPU (empty where they are not listed)."""
    return set((cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    return cpuinfo_field("model name", cpuinfo) or platform.processor() or "unknown CPU"


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """`GenuineIntel`, `AuthenticAMD`, ... (empty where it is not listed)."""
    return cpuinfo_field("vendor_id", cpuinfo) or ""


def compute_device() -> str:
    """`cuda` where torch sees a GPU, else `cpu` (also where torch is not installed: the light core)."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def native_bf16(device: str = "cpu", flags: set[str] | None = None) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU that supports it, or a CPU with AMX or AVX512-BF16."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_bf16_supported()
    return bool((cpu_flags() if flags is None else flags) & set(NATIVE_BF16_CPU_FLAGS))


def default_dtype(purpose: str, device: str | None = None, flags: set[str] | None = None) -> str:
    """The dtype `purpose` (a key of `DTYPE_PURPOSES`) uses on `device` (default: the GPU if any, else the CPU).

    Args:
        purpose: `train` and `check` compute in bf16 only where `device` does so natively; `serve` is float32 and
            `merge` bfloat16 everywhere.
        device: `cpu` or `cuda`.
        flags: CPU flags to decide from instead of this machine's (for tests).
    """
    if purpose not in DTYPE_PURPOSES:
        raise ValueError(f"Unknown dtype purpose {purpose!r}; choose one of {sorted(DTYPE_PURPOSES)}.")
    if purpose == "serve":
        return "float32"
    if purpose == "merge":
        return "bfloat16"
    return "bfloat16" if native_bf16(device or compute_device(), flags) else "float32"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("purpose", nargs="?", choices=sorted(DTYPE_PURPOSES), help="print only this purpose's dtype")
    args = parser.parse_args(argv)
    if args.purpose:
        print(default_dtype(args.purpose))
        return 0
    device = compute_device()
    print(f"{cpu_model_name()} ({cpu_vendor() or 'unknown vendor'})")
    print(f"{device} computes bf16 natively: {native_bf16(device)}")
    for purpose, why in DTYPE_PURPOSES.items():
        print(f"  {purpose:<6} {default_dtype(purpose, device):<9} {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
