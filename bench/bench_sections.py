"""Section-parser throughput on a synthetic MIMIC-style corpus (target: ≥ 20,000 reports/s on one core).

    python bench/bench_sections.py [--reports 100000]

The corpus is built from the sample's 64 reports, each varied (ids, numbers, sentence order, wrapping), so the
parser sees 100,000 distinct texts of realistic length rather than 64 cached ones.
"""

import argparse
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ko_radiology.sample_corpus import SAMPLE_DIR  # noqa: E402
from ko_radiology.sections import parse_report


def synthetic_corpus(size: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    templates = [path.read_text(encoding="utf-8") for path in sorted(SAMPLE_DIR.glob("files/p*/p*/s*.txt"))]
    corpus = []
    for index in range(size):
        text = rng.choice(templates)
        text = re.sub(r"\d+(?:\.\d+)?", lambda m: str(round(float(m.group()) * rng.uniform(0.5, 1.5), 1)), text)
        corpus.append(text.replace("___", rng.choice(["___", f"___ {index}"])))
    return corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=100_000)
    args = parser.parse_args()
    corpus = synthetic_corpus(args.reports)
    megabytes = sum(len(text) for text in corpus) / 1e6
    wall, cpu = time.perf_counter(), time.process_time()
    sections = sum(len(parse_report(text).sections) for text in corpus)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"parsed {args.reports:,} reports ({megabytes:.1f} MB, {sections:,} sections)")
    print(f"time: {cpu:.2f} s CPU, {wall:.2f} s wall")
    # CPU time is the one-core figure; wall time also counts whatever else the machine is doing.
    print(f"throughput: {args.reports / cpu:,.0f} reports/s per core of CPU time (target ≥ 20,000)")


if __name__ == "__main__":
    main()
