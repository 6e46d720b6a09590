"""The CPU recipe's training speed with and without the MKL vendor shim (`ko_radiology/cpu_blas.py`), on AMD CPUs.

    python bench/bench_mkl_vendor.py              # 3 repeats x 2 variants, 1 warm-up step, 6000 tokens
    python bench/bench_mkl_vendor.py --repeats 1  # reduced, for a busy machine (say so when quoting)

MKL runs generic kernels on AMD CPUs; the shim makes it choose by the CPU's features. Both variants are the `recipe`
variant of `bench/bench_sft_cpu.py` (steady-state tokens/s, each run in its own process), one with
`KO_RADIOLOGY_MKL_SHIM=0`, in alternating order (on/off, off/on, ...) so that a noisy machine favours neither. On
other CPUs the shim is never loaded and there is nothing to compare.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_sft_cpu import MKL_SHIM, parse_timing_args, print_machine, run_in_process  # noqa: E402

from ko_radiology.cpu_blas import SWITCH  # noqa: E402

TARGET = 1.1
"""Median tokens/s with the shim over without it that the shim must reach on an AMD CPU."""
VARIANTS = {"shim": "1", "no shim": "0"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = parse_timing_args(parser)
    if MKL_SHIM is None:
        print("Not an AMD CPU on Linux: the MKL vendor shim is never loaded here, nothing to compare.")
        return
    from eval.check import export_gold_sample

    print_machine()
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        dataset_dir = export_gold_sample(Path(tmp))
        for repeat in range(args.repeats):
            order = list(VARIANTS) if repeat % 2 == 0 else list(reversed(VARIANTS))
            for variant in order:
                result = run_in_process("recipe", dataset_dir, args, env={**os.environ, SWITCH: VARIANTS[variant]})
                rates[variant].append(result["tokens_per_s"])
                print(f"repeat {repeat + 1}, {variant}: {json.dumps(result)}", flush=True)
    print("| variant | runs | tokens/s min / median / max |")
    print("|---|---|---|")
    for variant, values in rates.items():
        spread = f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"
        print(f"| {variant} | {len(values)} | {spread} |")
    ratio = statistics.median(rates["shim"]) / statistics.median(rates["no shim"])
    ratios = sorted(on / off for on, off in zip(rates["shim"], rates["no shim"], strict=True))
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"pairwise ratios (same repeat): {', '.join(f'{r:.2f}x' for r in ratios)}")
    print(f"shim / no shim: {ratio:.2f}x median tokens/s (target >= {TARGET:.2f}x: {verdict})")


if __name__ == "__main__":
    main()
