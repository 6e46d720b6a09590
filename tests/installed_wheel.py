"""The project as `pip install` puts it on a machine: its wheel, built from this checkout's files (what a fresh clone
holds) and installed with `pip install --no-deps --target` into an empty folder, run by `python -S` processes that see
that folder and this environment's site-packages, but not the checkout or its editable install (a `.pth` hook)."""

import os
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    target: Path
    """`pip install --target` folder: the packages, and the console scripts in `bin/`."""

    def env(self, site: Path = SITE_PACKAGES, **extra: str) -> dict[str, str]:
        path = os.pathsep.join([str(self.target), str(site)])
        return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}

    def run(
        self, *args: str, cwd: Path, site: Path = SITE_PACKAGES, timeout: float = 300, **env: str
    ) -> subprocess.CompletedProcess:
        """`python -S ARGS` (`-S`: no site-packages `.pth` hooks, so no editable install) in `cwd`, the wheel's folder
        and `site` on the path, `env` added."""
        command = [sys.executable, "-S", *args]
        env = self.env(site, **env)
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def site_packages_without(names: set[str], folder: Path) -> Path:
    """This environment's site-packages as a folder of links to all but the modules and distributions in `names`:
    what an environment where those were never installed sees."""
    folder.mkdir()
    for entry in SITE_PACKAGES.iterdir():
        if re.split(r"[-.]", entry.name)[0] not in names:
            (folder / entry.name).symlink_to(entry)
    return folder


def checkout_files() -> list[str]:
    """Tracked files and new files git does not ignore: what a commit of this checkout would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(name for name in set(listed.stdout.splitlines()) if (ROOT / name).is_file())


def build_and_install(workdir: Path) -> InstalledWheel:
    """Copy the checkout's files (the build writes `build/` and `*.egg-info` beside its source), build the wheel
    offline with the installed setuptools, and install it alone into `workdir/site`."""
    source = workdir / "source"
    for name in checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((ROOT / name).read_bytes())
    dist, target = workdir / "dist", workdir / "site"
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", str(dist), str(source))
    (wheel,) = dist.glob("*.whl")
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel))
    return InstalledWheel(wheel, target)


def _pip(*args: str) -> None:
    done = subprocess.run([*PIP, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
