"""No part imports another part's internals, checked on the source: each deployable (`dataset_builder`, `training`,
`space`, `eval`) imports only itself, the shared library `ko_radiology` and third parties; `ko_radiology` imports no
part; `bench/` and `tests/` may import any part, but `bench/` never imports `tests/`.

Running another part's command (`<part>.__main__`, what `python -m <part>` runs) is that part's public interface,
not an internal, so it is allowed (training builds the sample through the builder's command).
"""

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PARTS = ("dataset_builder", "training", "space", "eval")
LIBRARY = "ko_radiology"
FOLDERS = (*PARTS, LIBRARY, "bench", "tests")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in `path`, at module level or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def allowed(folder: str, module: str) -> bool:
    top = module.split(".")[0]
    if top not in FOLDERS or folder == "tests":
        return True  # the standard library and third parties; tests may import anything
    if folder == "bench":
        return top != "tests"
    if folder == LIBRARY:
        return top == LIBRARY
    return top in (folder, LIBRARY) or module == f"{top}.__main__"


def boundary_violations(root: Path) -> list[str]:
    """`path:line imports module` for each import across a boundary, in path order."""
    violations = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            violations += [
                f"{path.relative_to(root)}:{line} imports {module}"
                for line, module in imported_modules(path)
                if not allowed(folder, module)
            ]
    return violations


def test_no_part_imports_another_parts_internals():
    violations = boundary_violations(REPO_ROOT)
    assert not violations, "move what both sides use into ko_radiology:\n" + "\n".join(violations)


def test_the_boundary_check_names_each_crossing(tmp_path):
    planted = {
        "space/translation.py": "from dataset_builder.pipeline import ChatCompleter\n",
        "ko_radiology/glossary.py": "def default():\n    from dataset_builder.gold import SAMPLE_DIR\n",
        "bench/bench_space.py": "import tests.conftest\n",
        "training/data.py": "from dataset_builder.__main__ import main\nimport ko_radiology.sections\n",
        "tests/test_x.py": "from bench.bench_space import main\nfrom space.demo import main\n",
    }
    for name, source in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    assert boundary_violations(tmp_path) == [
        "space/translation.py:1 imports dataset_builder.pipeline",
        "ko_radiology/glossary.py:2 imports dataset_builder.gold",
        "bench/bench_space.py:1 imports tests.conftest",
    ]
