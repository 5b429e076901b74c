"""The package as a user gets it: an sdist and a wheel that twine accepts, with one
version (``mediacache.__version__``) and only the engine and the Evolution client."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import mediacache

ROOT = Path(__file__).resolve().parent.parent


def test_sdist_and_wheel_build_and_pass_twine_check(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "-q", "--sdist", "--wheel", "-o", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    version = mediacache.__version__
    wheel = tmp_path / f"mediacache-{version}-py3-none-any.whl"
    sdist = tmp_path / f"mediacache-{version}.tar.gz"
    assert wheel.exists(), sorted(p.name for p in tmp_path.iterdir())
    assert sdist.exists()
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"mediacache", "evolution", f"mediacache-{version}.dist-info"}
    metadata = zipfile.ZipFile(wheel).read(f"mediacache-{version}.dist-info/METADATA").decode()
    assert f"Version: {version}" in metadata
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert f"mediacache-{version}/CHANGELOG.md" in members
    assert not any("/tests/" in m or "/chat/" in m for m in members)
