"""The MKL vendor shim: built into the cache, loaded only before torch, and the products it speeds up are the same."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from ko_radiology import cpu_blas
from ko_radiology.hardware import cpu_vendor

ON_AMD_LINUX = sys.platform == "linux" and cpu_vendor() == "AuthenticAMD"

PRODUCT_SCRIPT = """
import json
from ko_radiology.cpu_blas import load_mkl_vendor_shim
message = load_mkl_vendor_shim()
import torch
again = load_mkl_vendor_shim()  # after torch: says whether this process has it, not "imported first"
torch.manual_seed(0)
hidden, head = torch.randn(64, 640), torch.randn(32768, 640)
logits = torch.nn.functional.linear(hidden, head)
result = {"message": message, "again": again, "checksum": logits.double().sum().item()}
print(json.dumps(result | {"first": logits[0, :8].tolist()}))
"""


def run_product(env: dict) -> dict:
    run = subprocess.run([sys.executable, "-c", PRODUCT_SCRIPT], capture_output=True, text=True, env=env, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not ON_AMD_LINUX or shutil.which("cc") is None, reason="the shim only loads on AMD CPUs (Linux)")
def test_shim_is_built_loaded_before_torch_and_computes_the_same_products(tmp_path, monkeypatch):
    monkeypatch.setenv("KO_RADIOLOGY_CACHE", str(tmp_path))
    monkeypatch.delenv(cpu_blas.SWITCH, raising=False)
    shimmed = run_product(dict(os.environ))
    assert shimmed["message"].startswith("MKL vendor shim loaded") and shimmed["again"] == shimmed["message"]
    assert (tmp_path / "mkl_vendor_shim.so").is_file()
    plain = run_product({**os.environ, cpu_blas.SWITCH: "0"})
    assert plain["message"].startswith("MKL vendor shim off")
    assert shimmed["first"] == pytest.approx(plain["first"], rel=1e-4, abs=1e-4)
    assert shimmed["checksum"] == pytest.approx(plain["checksum"], rel=1e-4, abs=1e-2)


@pytest.mark.skipif(not ON_AMD_LINUX, reason="the shim only loads on AMD CPUs (Linux)")
def test_a_damaged_library_in_the_cache_is_reported_and_torch_still_works(tmp_path, monkeypatch):
    monkeypatch.setenv("KO_RADIOLOGY_CACHE", str(tmp_path))
    (tmp_path / "mkl_vendor_shim.so").write_bytes(b"not an ELF file")
    result = run_product(dict(os.environ))
    assert result["message"].startswith("MKL vendor shim not loaded (") and "generic kernels" in result["message"]
    assert len(result["first"]) == 8


def test_shim_is_not_loaded_once_torch_is_imported(monkeypatch):
    import torch  # noqa: F401  (as in any process that imported torch before asking)

    monkeypatch.setattr(cpu_blas, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.delenv(cpu_blas.SWITCH, raising=False)
    if sys.platform == "linux":
        assert cpu_blas.load_mkl_vendor_shim() == "MKL vendor shim not loaded: torch was imported first"


def test_shim_is_left_alone_on_other_vendors_and_when_switched_off(monkeypatch):
    monkeypatch.setattr(cpu_blas, "cpu_vendor", lambda: "GenuineIntel")
    assert cpu_blas.load_mkl_vendor_shim() is None
    monkeypatch.setattr(cpu_blas, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setenv(cpu_blas.SWITCH, "0")
    if sys.platform == "linux":
        assert "off (KO_RADIOLOGY_MKL_SHIM=0)" in cpu_blas.load_mkl_vendor_shim()


def test_without_a_compiler_the_build_fails_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KO_RADIOLOGY_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(OSError, match="no-such-cc"):
        cpu_blas.built_shim()
    assert list(tmp_path.iterdir()) == []  # no half-built library left behind
