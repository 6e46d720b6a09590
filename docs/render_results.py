"""Render the CPU recipe's measured numbers into the README and the recipe's header from one file.

    python docs/render_results.py           # `make docs`: rewrite what the markers hold
    python docs/render_results.py --check   # exit 1, naming each file that differs (tests/test_docs.py runs this)

The source is `docs/results/quality.json`, a copy of what `eval.check` wrote for the shipped recipe's adapter
(`out/adapters/KEY/adapter/quality.json`, whose model card `training/model_card.md` renders from the same file).
What is rendered sits between markers, so prose around it stays hand-written:

- README.md: `<!-- results:start -->` ... `<!-- results:end -->` (the Results table) and inline figures,
  `<!-- results:NAME -->VALUE<!-- /results -->`, where a table row or a sentence quotes one number;
- training/recipes/gemma3-270m-cpu.yaml: `# results:start` ... `# results:end` in its comment header.

Standard library only: it runs before `make setup`.
"""

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUALITY = ROOT / "docs" / "results" / "quality.json"
README = ROOT / "README.md"
RECIPE = ROOT / "training" / "recipes" / "gemma3-270m-cpu.yaml"
MIN_STOP_RATE = 0.95  # eval.check's targets (tests/test_docs.py keeps them equal)
MAX_LOOPING = 0
MIN_YES_NO_ACCURACY = 0.85
MIN_UNANSWERABLE_DECLINED = 0.75
MAX_ANSWERABLE_DECLINED = 0.05
METRICS = {"chrf_pp": "chrF++", "rouge_l_chars": "character ROUGE-L"}
BEHAVIOURS = {
    "yes_no_accuracy": (
        "yes/no questions answered with the gold's 네/아니요",
        "yes_no_questions",
        "≥",
        MIN_YES_NO_ACCURACY,
    ),
    "unanswerable_declined": (
        "unanswerable questions declined",
        "unanswerable_questions",
        "≥",
        MIN_UNANSWERABLE_DECLINED,
    ),
    "answerable_declined": (
        "false refusals: answerable questions declined",
        "answerable_questions",
        "≤",
        MAX_ANSWERABLE_DECLINED,
    ),
    "abbreviation_accuracy": ("abbreviations expanded as the glossary does", "abbreviation_pairs", None, None),
}
"""Each behaviour share of eval.check: its row label, the count it is a share of, and its target (None: none).
A quality.json from before eval.check measured them (or a split without their columns) renders "not measured"."""
INLINE = re.compile(r"<!-- results:(\w+) -->.*?<!-- /results -->")


class RenderError(ValueError):
    """A marker or a field the rendering needs is missing."""


def difference(quality: dict, metric: str, digits: int = 3) -> str:
    """`+0.169 (+0.120 to +0.220)`: the paired difference to the base with its 95% CI."""
    low, high = quality[f"{metric}_difference_ci95"]
    return f"{quality[f'{metric}_difference']:+.{digits}f} ({low:+.{digits}f} to {high:+.{digits}f})"


def figures(quality: dict) -> dict[str, str]:
    """Each number the README quotes inline, by the name its marker uses."""
    return {
        "examples": str(quality["examples"]),
        "stop_rate": f"{quality['stop_rate']:.0%}",
        "base_stop_rate": f"{quality['base_stop_rate']:.0%}",
        "looping": str(quality["looping"]),
        "base_looping": str(quality["base_looping"]),
        **{f"{metric}_difference": difference(quality, metric) for metric in METRICS},
    }


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def share(quality: dict, name: str) -> str:
    """`44% (19–73%)`: a behaviour share with its 95% Wilson interval, or `not measured`."""
    if quality.get(name) is None:
        return "not measured"
    low, high = quality[f"{name}_ci95"]
    return f"{quality[name]:.0%} ({low:.0%}–{high:.0%})"


def behaviour_target(quality: dict, name: str) -> str:
    """`≥ 85% — met`, from this file's constants (eval.check's), as the other rows' targets."""
    _, _, op, bound = BEHAVIOURS[name]
    if op is None:
        return "no target"
    value = quality.get(name)
    if value is None:
        return f"{op} {bound:.0%} — not measured"
    return f"{op} {bound:.0%} — {met(value >= bound if op == '≥' else value <= bound)}"


def behaviour_rows(quality: dict) -> list[str]:
    """One table row per behaviour: model, base (each with its CI) and target."""
    rows = []
    for name, (label, count, _, _) in BEHAVIOURS.items():
        over = f" ({quality[count]})" if quality.get(count) else ""
        rows.append(
            f"| {label}{over} | {share(quality, name)} | {share(quality, f'base_{name}')} | "
            f"| {behaviour_target(quality, name)} |"
        )
    return rows


def task_rows(quality: dict) -> list[str]:
    """chrF++ per task, when the file has it: no target, the difference's CI only."""
    rows = []
    for task, scores in (quality.get("chrf_pp_by_task") or {}).items():
        low, high = scores["difference_ci95"]
        rows.append(
            f"| chrF++, {task} ({scores['examples']}) | {scores['chrf_pp']:.3f} | {scores['base_chrf_pp']:.3f} "
            f"| {scores['difference']:+.3f} ({low:+.3f} to {high:+.3f}) | |"
        )
    return rows


def results_table(quality: dict) -> str:
    """The README's Results block: what was answered, then the reference metrics against their targets."""
    stopped = sum(quality["stop_tokens"].values())
    tokens = " or ".join(f"`{token}`" for token in quality["stop_tokens"]) or "an end-of-turn token"
    lead = (
        f"Reference metrics, from `eval.check` ([docs/results/quality.json](docs/results/quality.json), which "
        f"`make docs` renders here), on the {quality['examples']} questions of the `{quality['split']}` split of "
        f"{quality['dataset']} (greedy, ≤ {quality['max_new_tokens']} new tokens; base `{quality['base']}`); a "
        "behaviour's row counts the questions it is measured on (abbreviations: pairs of question and abbreviation), "
        "and each share comes with its 95% Wilson interval:"
    )
    lines = [
        *wrap(lead),
        "",
        "| | fine-tuned | untuned base | difference (95% paired bootstrap CI) | target |",
        "|---|---|---|---|---|",
        f"| answers that end with {tokens} | {quality['stop_rate']:.0%} ({stopped}/{quality['examples']}) "
        f"| {quality['base_stop_rate']:.0%} | "
        f"| ≥ {MIN_STOP_RATE:.0%} — {met(quality['stop_rate'] >= MIN_STOP_RATE)} |",
        f"| answers that loop (a word 4-gram ≥ 3×) | {quality['looping']} | {quality['base_looping']} | "
        f"| {MAX_LOOPING} — {met(quality['looping'] <= MAX_LOOPING)} |",
    ]
    for metric, label in METRICS.items():
        above = quality[f"{metric}_difference_ci95"][0] > 0
        lines.append(
            f"| {label} against the gold answers | {quality[metric]:.3f} | {quality[f'base_{metric}']:.3f} "
            f"| {difference(quality, metric)} | CI above 0 — {met(above)} |"
        )
        if metric == "chrf_pp":
            lines += task_rows(quality)
    return "\n".join(lines + behaviour_rows(quality))


def recipe_lines(quality: dict) -> str:
    """The recipe header's sentence on answer quality, as YAML comment lines."""
    stop = (
        "all answers stop by themselves"
        if quality["stop_rate"] == 1
        else f"{quality['stop_rate']:.0%} of answers stop by themselves"
    )
    loops = {0: "none loops", 1: "one loops"}.get(quality["looping"], f"{quality['looping']} loop")
    gains = " and ".join(f"{label} {quality[f'{metric}_difference']:+.2f}" for metric, label in METRICS.items())
    lows = [quality[f"{metric}_difference_ci95"][0] for metric in METRICS]
    cis = (
        "95% CIs above 0"
        if min(lows) > 0
        else "95% CIs: " + "; ".join(f"{label} {difference(quality, metric, 2)}" for metric, label in METRICS.items())
    )
    sentence = f"On the {quality['examples']} test questions {stop}, {loops}, {gains} over the base ({cis})."
    if any(quality.get(name) is not None for name in BEHAVIOURS):
        sentence += " " + behaviour_sentence(quality)
    header = "# Answer quality, rendered from docs/results/quality.json by `make docs`:"
    return "\n".join([header, *wrap(sentence, "# ")])


def behaviour_sentence(quality: dict) -> str:
    """`Yes/no questions answered with the gold's 네/아니요: 44% (target ≥ 85%); ...`: the behaviours with a target."""
    parts = "; ".join(
        f"{label}: {'not measured' if quality.get(name) is None else format(quality[name], '.0%')} "
        f"(target {op} {bound:.0%})"
        for name, (label, _, op, bound) in BEHAVIOURS.items()
        if op is not None
    )
    return f"{parts[0].upper()}{parts[1:]}."


def wrap(text: str, prefix: str = "") -> list[str]:
    """`text` in lines of at most 119 columns, as the hand-written lines around it."""
    return textwrap.wrap(
        text, 119, initial_indent=prefix, subsequent_indent=prefix, break_long_words=False, break_on_hyphens=False
    )


def replace_block(text: str, start: str, end: str, body: str, name: str) -> str:
    pattern = re.compile(rf"^{re.escape(start)}\n.*?^{re.escape(end)}$", re.DOTALL | re.MULTILINE)
    if len(pattern.findall(text)) != 1:
        raise RenderError(f"{name} needs exactly one block from a line `{start}` to a line `{end}`. Put them back.")
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


def render_readme(text: str, quality: dict) -> str:
    named = figures(quality)

    unknown = {name for name in INLINE.findall(text) if name not in named}
    if unknown:
        raise RenderError(f"README.md: no figure named {', '.join(sorted(unknown))} (known: {', '.join(named)}).")
    if unquoted := set(named) - set(INLINE.findall(text)):
        raise RenderError(f"README.md quotes no {', '.join(sorted(unquoted))}: a marker was lost. Put it back.")
    text = replace_block(text, "<!-- results:start -->", "<!-- results:end -->", results_table(quality), "README.md")
    return INLINE.sub(lambda match: f"<!-- results:{match[1]} -->{named[match[1]]}<!-- /results -->", text)


def render_recipe(text: str, quality: dict) -> str:
    return replace_block(text, "# results:start", "# results:end", recipe_lines(quality), RECIPE.name)


def rendered(quality_path: Path = QUALITY) -> dict[Path, str]:
    """Each file as it should read, from `quality_path`."""
    fix = "Copy quality.json as `eval.check` wrote it into the model folder."
    try:
        quality = json.loads(quality_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RenderError(f"{quality_path}: {error}. {fix}") from None
    try:
        return {
            README: render_readme(README.read_text(encoding="utf-8"), quality),
            RECIPE: render_recipe(RECIPE.read_text(encoding="utf-8"), quality),
        }
    except (KeyError, TypeError, IndexError) as error:
        raise RenderError(f"{quality_path} has no usable {error}. {fix}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    try:
        files = rendered()
    except RenderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stale = [path for path, text in files.items() if path.read_text(encoding="utf-8") != text]
    if args.check:
        source = QUALITY.relative_to(ROOT)
        for path in stale:
            print(f"error: {path.relative_to(ROOT)} is not what {source} renders. Run `make docs`.", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(files[path], encoding="utf-8")
        partial.replace(path)  # whole or not at all
        print(f"rendered {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
