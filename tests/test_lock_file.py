"""The lock file of the PyPI route (envs/pypi-lock.txt, installed by `make env`) against
pyproject.toml: every dependency of the package and of the extras the Makefile installs is
locked, at one exact version inside its range, with hashes; torch is the Makefile's CPU pin."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def makefile_variable(name: str) -> str:
    """The value of ``NAME ?= value`` or ``NAME := value`` in the Makefile."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{name}\s*[?:]?=\s*(\S*)\s*$", text, flags=re.MULTILINE)
    assert match, f"the Makefile sets no {name}"
    return match.group(1)


def read_lock(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """{canonical name: (version, [sha256 hashes])} of a pip requirements file with hashes."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()  # "# via ..." comments
        if not line or line.startswith("#"):
            continue
        head, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", head)
        assert match, f"{path}: {head!r} is not pinned with =="
        hashes = [o.split("=", 1)[1] for o in options if o.startswith("--hash=")]
        name = canonicalize_name(match.group(1))
        assert name not in entries, f"{path}: {name} is locked twice"
        entries[name] = (Version(match.group(2)), hashes)
    return entries


def test_lock_pins_every_dependency_of_the_installed_extras_inside_its_range():
    lock_path = ROOT / makefile_variable("LOCK")
    lock = read_lock(lock_path)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = makefile_variable("EXTRAS").split(",")
    requirements = list(project["dependencies"])
    for extra in extras:
        assert extra in project["optional-dependencies"], f"Makefile extra {extra} is unknown"
        requirements += project["optional-dependencies"][extra]
    environment = {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"}
    checked = 0
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(environment):
            continue
        name = canonicalize_name(req.name)
        assert name in lock, f"{lock_path} lacks {req.name} (pyproject.toml: {text!r})"
        version = lock[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"{lock_path} locks {req.name}=={version}, outside pyproject.toml's {text!r}"
        )
        checked += 1
    assert checked == len(requirements)
    for name, (version, hashes) in lock.items():
        assert hashes, f"{lock_path}: {name}=={version} has no hash (pip --require-hashes)"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h.removeprefix("sha256:")) for h in hashes)
    # the Makefile's CPU pin of torch, as its CPU wheel
    torch_pin = Requirement(makefile_variable("TORCH"))
    assert lock["torch"][0] == Version(f"{next(iter(torch_pin.specifier)).version}+cpu")


def test_lock_reader_sees_a_range_violation(tmp_path):
    """The check above can fail: a lock holding a version outside a range is caught."""
    lock = tmp_path / "lock.txt"
    lock.write_text("gsd==6.0.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via tbotan\n")
    entries = read_lock(lock)
    assert entries["gsd"][0] == Version("6.0.0")
    assert not Requirement("gsd>=3.2,<6").specifier.contains(entries["gsd"][0])
    lock.write_text("gsd>=3.2\n")
    with pytest.raises(AssertionError, match="not pinned"):
        read_lock(lock)
