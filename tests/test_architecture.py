"""The layering of the package (docs/architecture.md), checked on the source's import statements.

- The MD library (``tbotan/md/``) knows nothing of the pipeline's configuration: no module under
  it imports ``tbotan.config`` or ``tbotan.pipeline`` (the one place that translates the
  configuration into MD parameters).
- No library module imports the command layer (``tbotan.commands``, ``tbotan.cli``).
- The physics of the model system (``tbotan/physics/``) imports neither the MD engines, the
  pipeline configuration nor any later stage.
- Dataset contents are assembled in one place: only ``tbotan/formats/dataset.py`` constructs
  ``DatasetContent`` or ``Graph`` (everyone else builds through
  ``DatasetContent.from_configurations`` and ``select_configurations``).

Every ``import``/``from ... import`` of every file counts, function-level (lazy) imports
included; relative imports are resolved against the file's package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tbotan

PACKAGE = Path(tbotan.__file__).resolve().parent
CONFIG_MODULES = ("tbotan.config", "tbotan.pipeline")
COMMAND_LAYER = ("tbotan.commands", "tbotan.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every module ``path`` (or ``source``, read as if it were ``path``) imports, anywhere in
    the file (``from a import b`` gives both ``a`` and ``a.b``: ``b`` may be a submodule)."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def refers_to(imported: str, targets: tuple[str, ...]) -> bool:
    return any(imported == t or imported.startswith(t + ".") for t in targets)


def modules_under(*parts: str) -> list[Path]:
    return sorted(PACKAGE.joinpath(*parts).rglob("*.py"))


LIBRARY = [
    p
    for p in modules_under()
    if not refers_to(module_name(p), COMMAND_LAYER) and module_name(p) != "tbotan.__main__"
]


def test_the_scan_sees_the_whole_package():
    names = {module_name(p) for p in modules_under()}
    for expected in (
        "tbotan.md.protocols",
        "tbotan.physics.kalj",
        "tbotan.learning.training",
        "tbotan.commands.train",
        "tbotan.cli",
        "tbotan.formats.dataset",
    ):
        assert expected in names
    # function-level imports are seen: training draws its progress bar lazily
    assert "tbotan.progress" in imported_modules(PACKAGE / "learning" / "training.py")


@pytest.mark.parametrize("path", modules_under("md"), ids=lambda p: module_name(p))
def test_md_does_not_import_the_pipeline_configuration(path):
    bad = sorted(m for m in imported_modules(path) if refers_to(m, CONFIG_MODULES))
    assert not bad, f"{module_name(path)} imports the pipeline configuration: {bad}"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: module_name(p))
def test_library_does_not_import_the_command_layer(path):
    bad = sorted(m for m in imported_modules(path) if refers_to(m, COMMAND_LAYER))
    assert not bad, f"{module_name(path)} imports the command layer: {bad}"


LATER_THAN_PHYSICS = (
    "tbotan.md",
    "tbotan.config",
    "tbotan.pipeline",
    "tbotan.labels",
    "tbotan.learning",
    "tbotan.analysis",
    "tbotan.checks",
    "tbotan.commands",
    "tbotan.cli",
)


@pytest.mark.parametrize("path", modules_under("physics"), ids=lambda p: module_name(p))
def test_physics_imports_no_later_stage(path):
    bad = sorted(m for m in imported_modules(path) if refers_to(m, LATER_THAN_PHYSICS))
    assert not bad, f"{module_name(path)} imports a later stage: {bad}"


def test_the_check_catches_lazy_and_relative_imports():
    """The checker itself: a function-level import of the configuration and a relative import
    of the command layer, as they would read inside md/protocols.py, are both found."""
    path = PACKAGE / "md" / "protocols.py"
    lazy = "def f():\n    from tbotan import config as cfgmod\n    return cfgmod\n"
    assert any(refers_to(m, CONFIG_MODULES) for m in imported_modules(path, lazy))
    relative = "def g():\n    from ..commands import common\n"
    assert "tbotan.commands.common" in imported_modules(path, relative)
    assert not any(refers_to(m, COMMAND_LAYER) for m in imported_modules(path, "import numpy\n"))


DATASET_MODULE = PACKAGE / "formats" / "dataset.py"


def constructed(path: Path, names: tuple[str, ...], source: str | None = None) -> list[str]:
    """Calls ``Name(...)`` or ``x.Name(...)``/``Name.method(...)`` of ``names`` in ``path``."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in names:  # DatasetContent(...)
            found.append(f"{func.id} (line {node.lineno})")
        elif isinstance(func, ast.Attribute) and func.attr in names:  # dataset.Graph(...)
            found.append(f"{func.attr} (line {node.lineno})")
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in names
            and func.attr != "from_configurations"
        ):  # Graph.concatenate(...)
            found.append(f"{func.value.id}.{func.attr} (line {node.lineno})")
    return found


@pytest.mark.parametrize(
    "path", [p for p in modules_under() if p != DATASET_MODULE], ids=lambda p: module_name(p)
)
def test_dataset_contents_are_built_by_the_shared_builders(path):
    bad = constructed(path, ("DatasetContent", "Graph"))
    assert not bad, (
        f"{module_name(path)} assembles dataset content itself ({', '.join(bad)}): use "
        "DatasetContent.from_configurations / select_configurations of tbotan.formats.dataset"
    )


def test_the_builder_check_sees_direct_construction():
    path = PACKAGE / "labels" / "chunks.py"
    direct = "def f(a):\n    return DatasetContent(attrs=a, graph=Graph.concatenate([]))\n"
    assert len(constructed(path, ("DatasetContent", "Graph"), direct)) == 2
    qualified = "def f(a):\n    return dataset.DatasetContent(attrs=a)\n"
    assert len(constructed(path, ("DatasetContent", "Graph"), qualified)) == 1
    shared = "def f(a, r):\n    return DatasetContent.from_configurations(a, r)\n"
    assert not constructed(path, ("DatasetContent", "Graph"), shared)
