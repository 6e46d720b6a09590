"""The one dtype policy (`ko_radiology.hardware.default_dtype`): what each purpose computes in, and that every default
dtype in the project (the CLIs, the library's loaders, the Makefile) is taken from it while an explicit one wins."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from ko_radiology.generation import load_for_generation
from ko_radiology.hardware import DTYPE_PURPOSES, cpu_flags, default_dtype
from ko_radiology.processes import launch_model_server

ROOT = Path(__file__).parent.parent
NATIVE = [{"avx2", "avx512f", "avx512_bf16"}, {"amx_bf16"}]
EMULATED = [{"avx2", "fma"}, set()]


@pytest.mark.parametrize("purpose", ["train", "check"])
@pytest.mark.parametrize(("flags", "dtype"), [*((f, "bfloat16") for f in NATIVE), *((f, "float32") for f in EMULATED)])
def test_computing_purposes_use_bf16_only_where_the_cpu_computes_it_natively(purpose, flags, dtype):
    assert default_dtype(purpose, "cpu", flags) == dtype


@pytest.mark.parametrize("flags", NATIVE + EMULATED)
def test_serving_is_float32_and_merging_bfloat16_on_every_cpu(flags):
    assert default_dtype("serve", "cpu", flags) == "float32"
    assert default_dtype("merge", "cpu", flags) == "bfloat16"


def test_an_unknown_purpose_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"Unknown dtype purpose 'serving'; choose one of \['check', 'merge'"):
        default_dtype("serving")


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "fma"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_the_policy_command_prints_each_purpose_and_one_on_request():
    def run(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "ko_radiology.hardware", *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout

    table = run()
    for purpose in DTYPE_PURPOSES:
        assert f"  {purpose:<6} {default_dtype(purpose):<9} " in table
    assert run("serve") == "float32\n"


def test_every_default_dtype_is_the_policys(tmp_path):
    from eval.check import parse_args as check_args
    from space.demo import parse_args as demo_args
    from training.export import merge_adapter

    assert check_args([str(tmp_path)]).dtype == default_dtype("check")
    assert demo_args(["--model", "embedded:base"]).dtype == default_dtype("serve")
    assert inspect.signature(merge_adapter).parameters["dtype"].default == default_dtype("merge")
    # The answer cache follows the check's dtype: tests/test_answer_cache.py holds that.
    for loader in (load_for_generation, launch_model_server):
        assert inspect.signature(loader).parameters["dtype"].default == default_dtype("serve"), loader.__name__


def test_an_explicit_dtype_wins_and_auto_trains_in_the_policys(tmp_path):
    from trl import ModelConfig, SFTConfig

    from training.sft import training_dtype

    on_cpu = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    assert training_dtype(ModelConfig(dtype="auto"), on_cpu) == default_dtype("train", "cpu")
    assert training_dtype(ModelConfig(dtype="float16"), on_cpu) == "float16"


def test_make_merges_for_its_local_server_in_the_serving_dtype_and_serves_in_the_demos_default(tmp_path):
    venv = Path(sys.executable).parent.parent
    variables = [f"VENV={venv}", f"OUT={tmp_path}"]
    printed = subprocess.run(
        ["make", "-n", f"{tmp_path}/adapters/KEY/merged/config.json", *variables],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    merge = next(line for line in printed.splitlines() if "-m training.export" in line)
    assert merge.endswith(f"--dtype {default_dtype('serve')}"), merge
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--dtype float32" not in makefile and "--dtype bfloat16" not in makefile
