"""Summarize scored CSVs: mean ± 95% CI per model and criterion, failures, paired win rates, and a bar chart.

    python -m eval.report scored_acc.csv scored_coc.csv --out report/

Writes `report/report.md` (two Markdown tables) and `report/scores.png` (grouped bars with CI error bars). Models
are compared on the questions both were scored on: win rate with ties as half, the paired bootstrap CI of the mean
difference, and an exact sign test (ties dropped).
"""

import argparse
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from eval.tables import CRITERION, SCORE_SUFFIX, read_table, require_columns, suffixed_columns
from ko_radiology.atomic_io import write_text_atomically
from ko_radiology.cli import run_cli
from ko_radiology.judge import ScoreSummary, summarize_scores
from ko_radiology.statistics import paired_bootstrap, sign_test

REPORT_FILE, CHART_FILE = "report.md", "scores.png"


@dataclass(frozen=True)
class CriterionScores:
    criterion: str
    scores: dict[str, list[float | None]]


@dataclass(frozen=True)
class PairedComparison:
    criterion: str
    model_a: str
    model_b: str
    n: int
    a_wins: int
    ties: int
    b_wins: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def win_rate(self) -> float:
        return (self.a_wins + self.ties / 2) / self.n


def _score(value: str, path: str, column: str, row: int) -> float | None:
    """An empty cell is a failed judgement; anything else must be a number."""
    if not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{path} column {column!r} row {row} holds {value!r}, not a score.") from None


def read_scores(path: str) -> CriterionScores:
    table = read_table(path)
    require_columns(table, path, [CRITERION], "Pass CSVs written by `python -m eval.judge`.")
    columns = suffixed_columns(table, SCORE_SUFFIX)
    if not columns:
        raise ValueError(f"{path} has no NAME{SCORE_SUFFIX} column; pass CSVs written by `python -m eval.judge`.")
    scores = {
        name: [_score(v, path, column, row) for row, v in enumerate(table[column])] for name, column in columns.items()
    }
    return CriterionScores(table[CRITERION].iloc[0], scores)


def compare_pair(criterion: str, name_a: str, a: list, name_b: str, b: list, seed: int = 0) -> PairedComparison | None:
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if not pairs:
        return None
    xs, ys = zip(*pairs, strict=True)
    wins, losses = sum(x > y for x, y in pairs), sum(x < y for x, y in pairs)
    diff, low, high = paired_bootstrap(xs, ys, seed=seed)
    ties = len(pairs) - wins - losses
    return PairedComparison(
        criterion, name_a, name_b, len(pairs), wins, ties, losses, diff, low, high, sign_test(wins, losses)
    )


def _cell(summary: ScoreSummary) -> str:
    failed = f"{summary.num_failures}/{summary.num_samples} failed"
    if summary.mean is None:
        return f"n/a · {failed}"
    return f"{summary.mean:.2f} [{summary.ci_low:.2f}, {summary.ci_high:.2f}] · {failed}"


def means_table(results: list[CriterionScores], summaries: dict[tuple[str, str], ScoreSummary]) -> str:
    models = list(dict.fromkeys(name for result in results for name in result.scores))
    lines = ["| model | " + " | ".join(r.criterion for r in results) + " |", "|---" * (len(results) + 1) + "|"]
    for model in models:
        cells = [_cell(summaries[(r.criterion, model)]) if model in r.scores else "—" for r in results]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pairs_table(comparisons: list[PairedComparison]) -> str:
    lines = [
        "| criterion | A vs B | n | A wins / ties / B wins | A win rate | mean A − B [95% CI] | sign test p |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c.criterion} | {c.model_a} vs {c.model_b} | {c.n} | {c.a_wins} / {c.ties} / {c.b_wins} | "
            f"{c.win_rate:.2f} | {c.mean_diff:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}] | {c.p_value:.3g} |"
        )
    return "\n".join(lines)


def plot(results: list[CriterionScores], summaries: dict[tuple[str, str], ScoreSummary], path: Path) -> None:
    """Grouped bars: one group per criterion, one bar per model, error bars from the CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(name for result in results for name in result.scores))
    width = 0.8 / len(models)
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(results) * len(models) ** 0.5), 4))
    for offset, model in enumerate(models):
        found = [summaries.get((r.criterion, model)) for r in results]
        means = [s.mean if s and s.mean is not None else 0 for s in found]
        errors = [
            [s.mean - s.ci_low if s and s.mean is not None else 0 for s in found],
            [s.ci_high - s.mean if s and s.mean is not None else 0 for s in found],
        ]
        positions = [i + (offset - (len(models) - 1) / 2) * width for i in range(len(results))]
        axes.bar(positions, means, width, yerr=errors, capsize=3, label=model)
        for position, summary in zip(positions, found, strict=True):
            if summary is None or summary.mean is None:  # nothing judged: say so rather than draw a 0
                axes.text(position, 0.05, "n/a", ha="center", va="bottom", fontsize="small", rotation=90)
    axes.set_xticks(range(len(results)), [r.criterion for r in results])
    axes.set_ylim(0, 4.8)
    axes.set_ylabel("mean judge score (1-4), 95% CI")
    axes.legend(loc="upper right", fontsize="small", ncols=min(4, len(models)))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def build_report(paths: list[str], out_dir: Path, judge: str | None = None) -> Path:
    results = [read_scores(path) for path in paths]
    if len({r.criterion for r in results}) != len(results):
        raise ValueError("Two inputs score the same criterion; pass one scored CSV per criterion.")
    summaries = {(r.criterion, name): summarize_scores(s) for r in results for name, s in r.scores.items()}
    comparisons = [
        comparison
        for r in results
        for (a, sa), (b, sb) in combinations(r.scores.items(), 2)
        if (comparison := compare_pair(r.criterion, a, sa, b, sb)) is not None
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(results, summaries, out_dir / CHART_FILE)
    text = "\n\n".join(
        [
            "# Judge scores",
            f"Judge: {judge or 'not named (pass --judge to eval.report)'}.",
            "Mean 1-4 score [95% bootstrap CI] of the judged answers; failed judgements are counted, not scored.",
            means_table(results, summaries),
            "## Paired comparisons (questions both models were scored on)",
            pairs_table(comparisons) if comparisons else "No pair of models was scored on a common question.",
            f"![scores]({CHART_FILE})",
        ]
    )
    return write_text_atomically(out_dir / REPORT_FILE, text + "\n")


def report_command(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("scored", nargs="+", help="scored CSVs from eval.judge, one per criterion")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.md and scores.png")
    parser.add_argument("--judge", help="who judged, as the report should say (e.g. 'gpt-4o-2024-08-06, OpenAI')")
    args = parser.parse_args(argv)
    print(build_report(args.scored, args.out, args.judge).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    return run_cli(report_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
