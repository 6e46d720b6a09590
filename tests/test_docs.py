"""Docs that cannot drift: the measured numbers come from docs/results/quality.json (docs/render_results.py), the
LLM client's docstring example runs, and the docs name only files and modules that exist."""

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RENDER = ROOT / "docs" / "render_results.py"
RENDERED = ("README.md", "training/recipes/gemma3-270m-cpu.yaml")
DOCS = ("README.md", "eval/README.md", "space/README.md", "eval/radiology_judge/README.md", "docs/original-project.md")
PARTS = ("ko_radiology", "dataset_builder", "training", "space", "eval")


def render(root: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(root / "docs" / "render_results.py"), *flags], capture_output=True, text=True, timeout=60
    )


def copy_of_the_rendered_files(tmp_path: Path) -> Path:
    for name in ("docs/render_results.py", "docs/results/quality.json", *RENDERED):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_the_readme_and_the_recipe_quote_what_quality_json_renders():
    result = render(ROOT, "--check")
    assert (result.returncode, result.stderr) == (0, "")
    readme = (ROOT / "README.md").read_text()
    assert "<!-- results:start -->\nReference metrics, from `eval.check`" in readme
    assert (
        "| chrF++ against the gold answers | 0.389 | 0.132 | +0.257 (+0.216 to +0.300) | CI above 0 — met |" in readme
    )
    shares = "| 68% (57%–78%) | 0% (0%–5%) | | ≥ 85% — **not met** |"
    assert f"| yes/no questions answered with the gold's 네/아니요 (73) {shares}" in readme
    recipe = (ROOT / RENDERED[1]).read_text()
    assert "all answers stop by themselves, none loops, chrF++ +0.26 and character ROUGE-L +0.39 over" in recipe


def test_a_number_edited_by_hand_is_named_and_rendered_back(tmp_path):
    root = copy_of_the_rendered_files(tmp_path)
    readme, recipe = (root / name for name in RENDERED)
    shipped = readme.read_text()
    readme.write_text(
        shipped.replace("+0.394 (+0.357 to +0.431)<!-- /results -->", "+0.40 (+0.36 to +0.43)<!-- /results -->")
    )
    recipe.write_text(recipe.read_text().replace("ROUGE-L +0.39", "ROUGE-L +0.35"))
    result = render(root, "--check")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {name} is not what docs/results/quality.json renders. Run `make docs`." for name in RENDERED
    ]
    assert render(root).returncode == 0
    assert (readme.read_text(), recipe.read_text()) == tuple((ROOT / name).read_text() for name in RENDERED)


def test_a_new_run_renders_its_own_numbers_and_targets(tmp_path):
    root = copy_of_the_rendered_files(tmp_path)
    quality = root / "docs" / "results" / "quality.json"
    quality.write_text(
        quality.read_text().replace('"looping": 0,', '"looping": 2,').replace('"stop_rate": 1.0', '"stop_rate": 0.8')
    )
    assert render(root).returncode == 0
    readme, recipe = ((root / name).read_text() for name in RENDERED)
    assert "| answers that loop (a word 4-gram ≥ 3×) | 2 | 60 | | 0 — **not met** |" in readme
    assert "| 80% (166/166) | 0% | | ≥ 95% — **not met** |" in readme
    assert "test questions <!-- results:stop_rate -->80%<!-- /results --> of its" in readme
    assert "<!-- results:looping -->2<!-- /results -->" in readme
    assert "# On the 166 test questions 80% of answers stop by themselves, 2 loop, chrF++ +0.26" in recipe


def test_a_run_with_every_field_renders_its_behaviours_and_per_task_chrf(tmp_path):
    """tests/fixtures/quality.json: eval.check's `quality()` on the sample's test split with made-up answers."""
    root = copy_of_the_rendered_files(tmp_path)
    shutil.copy(ROOT / "tests" / "fixtures" / "quality.json", root / "docs" / "results" / "quality.json")
    assert render(root).returncode == 0
    readme, recipe = ((root / name).read_text() for name in RENDERED)
    rows = [
        "| chrF++, 질문 답변 (22) | 0.791 | 0.028 | +0.763 (+0.645 to +0.875) | |",
        "| chrF++, 요약 (16) | 0.700 | 0.023 | +0.677 (+0.559 to +0.797) | |",
        "| yes/no questions answered with the gold's 네/아니요 (9) | 44% (19%–73%) | 11% (2%–43%) | "
        "| ≥ 85% — **not met** |",
        "| unanswerable questions declined (4) | 75% (30%–95%) | 0% (0%–49%) | | ≥ 75% — met |",
        "| false refusals: answerable questions declined (66) | 2% (0%–8%) | 0% (0%–6%) | | ≤ 5% — met |",
        "| abbreviations expanded as the glossary does (30) | 67% (49%–81%) | 0% (0%–11%) | | no target |",
    ]
    assert all(row in readme for row in rows), readme
    assert readme.index("| chrF++ against") < readme.index("| chrF++, 질문 답변") < readme.index("| character ROUGE-L")
    assert (
        "# the base (95% CIs above 0). Yes/no questions answered with the gold's 네/아니요: 44% (target ≥ 85%);"
        in (recipe)
    )
    assert "declined: 2% (target ≤ 5%)." in recipe


def test_a_lost_marker_or_a_broken_quality_file_is_one_line(tmp_path):
    root = copy_of_the_rendered_files(tmp_path)
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("<!-- results:base_looping -->60<!-- /results -->", "60"))
    result = render(root)
    assert result.returncode == 2
    assert result.stderr == "error: README.md quotes no base_looping: a marker was lost. Put it back.\n"
    (root / "docs" / "results" / "quality.json").write_text("{}")
    result = render(root)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {root / 'docs' / 'results' / 'quality.json'} has no usable 'examples'.")
    assert readme.read_text().count("60") == (ROOT / "README.md").read_text().count("60")  # nothing was written


def test_the_rendered_targets_are_eval_checks():
    spec = importlib.util.spec_from_file_location("render_results", RENDER)
    renderer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(renderer)
    check = Path(importlib.util.find_spec("eval.check").origin)
    names = {
        "MIN_STOP_RATE",
        "MAX_LOOPING",
        "MIN_YES_NO_ACCURACY",
        "MIN_UNANSWERABLE_DECLINED",
        "MAX_ANSWERABLE_DECLINED",
    }
    constants = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(check.read_text()).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in names
    }
    assert constants == {name: getattr(renderer, name) for name in names}


def test_the_llm_client_docstring_example_runs(tiny_server, tmp_path, monkeypatch, capsys):
    import ko_radiology.llm

    example = "\n".join(
        line[4:] for line in ko_radiology.llm.__doc__.splitlines() if line.startswith("    ") or not line.strip()
    ).strip()
    monkeypatch.chdir(tmp_path)  # the default cache_path, out/llm_cache.sqlite
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    example = example.replace("http://127.0.0.1:8000/v1", tiny_server.base_url).replace(
        '"my-model"', repr(tiny_server.model)
    )
    exec(compile(example, "ko_radiology.llm docstring", "exec"), {})
    printed = capsys.readouterr().out
    assert "cached" in printed and tiny_server.model in printed  # the dry run's and the ledger's tables
    assert (tmp_path / "out" / "llm_cache.sqlite").is_file()


def named_paths(text: str) -> set[str]:
    """Repository paths a doc names in backticks or links: `training/sft.py`, [x](docs/results/quality.json)."""
    tops = "|".join((*PARTS, "docs", "tests", "bench"))
    found = re.findall(rf"(?:`|\]\()((?:{tops})/[\w./-]*)", text)
    return {path.rstrip("/.") for path in found if not re.search(r"NN|KEY|\*|\.\.\.", path)}


def dotted_names(text: str) -> set[str]:
    return set(re.findall(rf"\b(?:{'|'.join(PARTS)})(?:\.\w+)+", text))


def resolves(name: str) -> bool:
    """A module of the checkout, or a name its nearest module defines."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:end])
        source = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
        if source:
            rest = parts[end:]
            return (
                not rest
                or rest[0] in {"py", "md", "yaml", "json"}
                or bool(re.search(rf"\b{rest[0]}\b", source.read_text()))
            )
    return False


def test_the_docs_name_only_files_and_modules_that_exist():
    texts = {name: (ROOT / name).read_text() for name in DOCS}
    for part in PARTS:
        for path in (ROOT / part).rglob("*.py"):
            texts[str(path.relative_to(ROOT))] = ast.get_docstring(ast.parse(path.read_text())) or ""
    missing = [
        f"{doc}: {path}" for doc, text in texts.items() for path in named_paths(text) if not (ROOT / path).exists()
    ]
    missing += [f"{doc}: {name}" for doc, text in texts.items() for name in dotted_names(text) if not resolves(name)]
    modules = {name for text in texts.values() for name in re.findall(r"python -m ([\w.]+)", text)}
    missing += [f"python -m {name}" for name in modules if importlib.util.find_spec(name) is None]
    assert missing == []


def training_key(data: Path, recipe: Path) -> str:
    """The key `make demo` and `make pipeline` store an adapter under (the Makefile's own `training_key`)."""
    probe = f"key: ; @echo $(call training_key,{data})"
    command = ["make", "-s", "-f", str(ROOT / "Makefile"), "--eval", probe, "key", f"RECIPE={recipe}"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def test_rendering_the_recipe_header_never_retrains(tmp_path):
    """`make docs` after a measured run rewrites the recipe's header; the adapter that run trained is still found."""
    root = copy_of_the_rendered_files(tmp_path / "checkout")
    (tmp_path / "data" / "qa").mkdir(parents=True)
    (tmp_path / "data" / "qa" / "train-00000-of-00001.parquet").write_bytes(b"rows")
    recipe = root / RENDERED[1]
    before = training_key(tmp_path / "data", recipe)
    quality = root / "docs" / "results" / "quality.json"
    quality.write_text(quality.read_text().replace('"looping": 0,', '"looping": 2,'))
    assert render(root).returncode == 0 and "2 loop" in recipe.read_text()
    assert training_key(tmp_path / "data", recipe) == before
    recipe.write_text(recipe.read_text().replace("learning_rate: 1.0e-3", "learning_rate: 2.0e-3"))
    assert training_key(tmp_path / "data", recipe) != before
