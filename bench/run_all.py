"""Run every benchmark in bench/ and write one table of their figures, targets and the machine: `make bench`.

    python bench/run_all.py --out bench/RESULTS.md
    python bench/run_all.py --only bench_sections.py --out /tmp/RESULTS.md

Each `bench_*.py` runs in its own process, its output shown as it comes. A script that accepts `--json PATH` writes
its figures there as a list of `{"figure": str, "value": number|str, "unit": str, "target": str, "met": bool|null}`;
from any other script, every printed line of the form `name: value (target ...)` becomes a row. Scripts named
`*_gpu.py` run only where CUDA is available and are listed as skipped elsewhere. The machine (CPU model and the flags
that decide bf16 speed, cores, memory, GPU), the load average before and after, and the date head the table: timings
taken while other work runs on the machine are noisy, and the load says how much. Below the table, the end of what
each script printed keeps every figure readable, parsed or not.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
"""The flags that decide whether bf16 is native (AVX512-BF16, AMX) or emulated (AVX2 only)."""
TARGET_LINE = re.compile(
    r"^\s*(?P<figure>[^:]{2,80}):\s*(?P<value>.+?)\s*\((?:[^()]*?; )?target (?P<target>[^)]+)\)(?P<verdict>.*)$"
)
"""`name: value (target X)`, `name: value (how; target X)`, optionally followed by a verdict such as `<- MISSED`."""
OUTPUT_LINES = 60
"""The last lines of each script's output kept in the results file, where every figure it printed can be read."""
CHECK_LINE = re.compile(r"^(?P<verdict>PASS|FAIL)\s+(?P<figure>.+)$")
"""`PASS description` / `FAIL description`."""


@dataclass
class BenchRun:
    """One script's outcome: exit status (None when skipped), wall time, figures, and the tail of its output."""

    script: str
    returncode: int | None
    seconds: float
    figures: list[dict] = field(default_factory=list)
    note: str = ""
    output: list[str] = field(default_factory=list)


def machine() -> dict[str, str]:
    """CPU model, the bf16-relevant flags, cores, memory and GPU, from /proc where it exists."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    flags = set(re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.MULTILINE).group(1).split()) if cpuinfo else set()
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = re.search(r"^MemTotal:\s*(\d+)", meminfo, re.MULTILINE)
    return {
        "CPU": model.group(1).strip() if model else platform.processor() or platform.machine(),
        "CPU flags": ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in CPU_FLAGS) if flags else "?",
        "cores": f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} usable",
        "memory": f"{int(mem_kb.group(1)) / 2**20:.1f} GiB" if mem_kb else "?",
        "GPU": gpu_name() or "none",
        "Python / OS": f"{platform.python_version()} / {platform.platform()}",
    }


def gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return f"{props.name}, {props.total_memory / 2**30:.0f} GiB"


def accepts_json(script: Path) -> bool:
    """Whether the script documents a `--json` option (its `--help` names it)."""
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT)
    return "--json" in help_text.stdout


def needs_gpu(script: Path) -> bool:
    return script.name.endswith("_gpu.py")


def skipped(script: Path) -> BenchRun:
    return BenchRun(script.name, None, 0.0, note="skipped: needs CUDA, none here")


def verdict(text: str) -> bool | None:
    if re.search(r"\b(FAIL|MISSED|NOT met|not met)\b", text):
        return False
    return True if re.search(r"\b(PASS|met|OK)\b", text) else None


def figures_from_lines(lines: list[str]) -> list[dict]:
    """Rows from printed lines, for scripts without `--json`."""
    figures = []
    for line in lines:
        if m := TARGET_LINE.match(line):
            figure = {"figure": m["figure"].strip(), "value": m["value"], "target": m["target"]}
            figures.append({**figure, "unit": "", "met": verdict(m["target"] + m["verdict"])})
        elif m := CHECK_LINE.match(line):
            figures.append(
                {"figure": m["figure"].strip(), "value": "", "unit": "", "target": "", "met": m["verdict"] == "PASS"}
            )
    return figures


def run_script(script: Path) -> BenchRun:
    """Run one benchmark, echoing its output, and collect its figures (JSON if offered, else its target lines)."""
    print(f"== {script.name}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        json_path = Path(tmp) / "figures.json"
        command = [sys.executable, str(script)] + (["--json", str(json_path)] if accepts_json(script) else [])
        start = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
        returncode = process.wait()
        figures = json.loads(json_path.read_text()) if json_path.exists() else figures_from_lines(lines)
    note = "" if returncode == 0 else f"exit {returncode}: {lines[-1] if lines else 'no output'}"
    return BenchRun(script.name, returncode, time.monotonic() - start, figures, note, lines)


def cell(value) -> str:
    text = "" if value is None else f"{value:,.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|")


def printed_outputs(runs: list[BenchRun]) -> list[str]:
    """The end of each script's output, folded, so that every figure it printed stays readable in the file."""
    outputs = ["", "## What each benchmark printed", ""]
    for run in runs:
        if run.output:
            tail = run.output[-OUTPUT_LINES:]
            outputs += [
                f"<details><summary><code>{run.script}</code></summary>",
                "",
                "```text",
                *tail,
                "```",
                "</details>",
            ]
    return outputs


def render(runs: list[BenchRun], facts: dict[str, str], load_before: str, load_after: str) -> str:
    met = {True: "yes", False: "**no**", None: ""}
    rows = ["| benchmark | figure | value | target | met |", "| --- | --- | --- | --- | --- |"]
    for run in runs:
        status = "skipped" if run.returncode is None else "ok" if run.returncode == 0 else "**failed**"
        label = f"`{run.script}` ({status}, {run.seconds:.0f} s)"
        for figure in run.figures or [{"figure": run.note or "(no target lines: see its output below)"}]:
            value = f"{cell(figure.get('value'))} {figure.get('unit', '')}".strip()
            rows.append(
                f"| {label} | {cell(figure.get('figure'))} | {value} | {cell(figure.get('target'))} "
                f"| {met[figure.get('met')]} |"
            )
        if run.note and run.figures:
            rows.append(f"| {label} | {cell(run.note)} | | | |")
    header = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python bench/run_all.py`) on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} "
        "UTC. Each script prints its own numbers and method; this table collects them.",
        "",
        *(f"- **{name}:** {value}" for name, value in facts.items()),
        f"- **load average (1, 5, 15 min):** {load_before} before, {load_after} after "
        "(a load above the core count means the figures shared the CPU with other work)",
        "",
    ]
    return "\n".join(header + rows + printed_outputs(runs)) + "\n"


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md", help="Markdown file to write")
    parser.add_argument("--only", nargs="+", metavar="SCRIPT", help="run only these bench_*.py files")
    args = parser.parse_args(argv)
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if args.only:
        unknown = set(args.only) - {script.name for script in scripts}
        if unknown:
            have = ", ".join(script.name for script in scripts)
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))} (have: {have})")
        scripts = [script for script in scripts if script.name in args.only]
    facts, load_before = machine(), load_average()
    has_gpu = facts["GPU"] != "none"
    runs = [run_script(script) if has_gpu or not needs_gpu(script) else skipped(script) for script in scripts]
    args.out.write_text(render(runs, facts, load_before, load_average()), encoding="utf-8")
    print(f"Results → {args.out}")
    return 0 if all(run.returncode in (0, None) for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
