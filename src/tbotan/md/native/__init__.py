"""Native CPU kernels of the torch engine, compiled on first use.

``kalj_cpu.cpp`` is built with :func:`torch.utils.cpp_extension.load` (a C++17 compiler and
``ninja`` are needed; both install on any Linux workstation, ``ninja`` from PyPI) with
``-O3 -march=native -fopenmp -fno-math-errno -ffp-contract=off``: the instruction set of the
build machine (AVX-512 loops where it has them, see ``use_simd``), square roots that the
compiler may vectorise (no ``errno``), and arithmetic exactly as written (no fused
multiply-adds the compiler chooses differently from one function to another: the force loops
with and without energies give bit-identical forces).

The build is cached under ``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``) in a
directory named by :func:`build_key`: a hash of the kernel sources' bytes (not their path), the
compiler flags, the CPU's instruction-set flags, the torch build and the Python ABI.  Identical
sources thus share one build across checkouts and virtual environments, any change to them gets
a build of its own (never a stale one), and a home directory shared by cluster nodes of
different CPU generations never loads a binary built for another instruction set.

Each build runs in a private subdirectory, from a copy of exactly the bytes that were hashed,
and its library is then published into the keyed directory by an atomic rename; a load that
finds the library imports it directly, without torch's builder (whose ``build.ninja`` names the
checkout and the virtual environment, so it would rebuild for each).  Concurrent first uses are
serialised by an ``flock`` on ``tbotan.lock`` so they build once; where the file system cannot
lock they build twice, still safely.  Stale ``build-*`` folders of killed builds are removed
after an hour.

:func:`load` returns the module, or None (with the reason in :func:`unavailable_reason`) when
it cannot be built; the engine then falls back to the pure-torch kernels.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import platform
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

_DIR = Path(__file__).parent
_SOURCE = _DIR / "kalj_cpu.cpp"
# Every file that goes into the build (compiled .cpp and any local header); all are hashed.
_SUFFIXES = (".cpp", ".cc", ".h", ".hpp")
_module = None
_failure: str | None = None
log = logging.getLogger(__name__)


def _cpu_signature() -> str:
    flags = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags += line.split(":", 1)[1]
                break
    except OSError:
        flags += platform.processor()
    return flags


def kernel_sources(directory: Path = _DIR) -> list[Path]:
    """The kernel's source files (sorted): what is hashed, copied and compiled."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in _SUFFIXES)


def cflags() -> list[str]:
    flags = ["-O3", "-fopenmp", "-fno-math-errno", "-ffp-contract=off", "-std=c++17"]
    flags.append("-march=native" if platform.machine() in ("x86_64", "AMD64") else "-mcpu=native")
    return flags


LDFLAGS = ("-fopenmp",)


def build_environment() -> dict:
    """What besides the sources and flags decides the binary: CPU, torch build, Python ABI."""
    import torch

    return {
        "cpu": _cpu_signature(),
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", ""),
        "cxx11_abi": bool(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", False)),
        "python": sys.implementation.cache_tag,
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX") or "",
        "platform": sysconfig.get_platform(),
        "cxx": os.environ.get("CXX", "c++"),
    }


def read_sources(sources: Iterable[Path]) -> dict[str, bytes]:
    """File name -> bytes of the sources (their directory plays no part)."""
    paths = [Path(p) for p in sources]
    files = {p.name: p.read_bytes() for p in paths}
    if len(files) != len(set(paths)):
        raise ValueError("kernel sources must have distinct file names")
    return dict(sorted(files.items()))


def build_key(
    sources: Iterable[Path] | dict[str, bytes],
    cflags: Sequence[str],
    ldflags: Sequence[str],
    environment: dict,
) -> str:
    """Hash naming a build: the sources' file names and bytes (not their directory), the flags
    and the build environment.  Equal for a copy of the sources anywhere; any byte changes it."""
    files = sources if isinstance(sources, dict) else read_sources(sources)
    h = hashlib.sha256()

    def feed(data: bytes) -> None:  # length-prefixed, so no two inputs run together
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    for file_name in sorted(files):
        feed(file_name.encode())
        feed(files[file_name])
    feed(json.dumps([list(cflags), list(ldflags), environment], sort_keys=True).encode())
    return h.hexdigest()[:20]


def extension_name() -> str:
    """Name of the cached build (and of its directory): ``tbotan_kalj_cpu_<build key>``."""
    return "tbotan_kalj_cpu_" + build_key(kernel_sources(), cflags(), LDFLAGS, build_environment())


def build_directory(name: str) -> Path:
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    return Path(root) / name


def _library(directory: Path, name: str) -> Path:
    return directory / (name + (".pyd" if os.name == "nt" else ".so"))


def _import(directory: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, _library(directory, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _exclusive(directory: Path):
    """An flock on the build directory, so concurrent first uses build once.  Only an
    economy: builds are private and published atomically, so where the file system cannot lock
    the worst case is two identical builds."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(directory / "tbotan.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            handle = None
        try:
            yield
        finally:
            if handle is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _build(directory: Path, name: str, sources: dict[str, bytes], flags: list[str]):
    """Build in a private subdirectory (torch's lock file there is never shared, so a killed
    build cannot leave others waiting on it) from the bytes that were hashed, then publish the
    library into ``directory`` with an atomic rename."""
    from torch.utils.cpp_extension import load as load_extension

    for old in directory.glob("build-*"):  # left by killed builds
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=directory))
    try:
        for file_name, data in sources.items():
            (work / file_name).write_bytes(data)
        log.info("building native KALJ kernels in %s (once per source version)", directory)
        module = load_extension(
            name=name,
            sources=[str(work / f) for f in sources if Path(f).suffix in (".cpp", ".cc")],
            extra_cflags=list(flags),  # copies: torch appends to the lists it is given
            extra_ldflags=list(LDFLAGS),
            build_directory=str(work),
            verbose=False,
        )
        info = {"flags": flags, "ldflags": list(LDFLAGS), "files": sorted(sources)}
        (work / "key.json").write_text(json.dumps(info | build_environment(), indent=1) + "\n")
        os.replace(work / "key.json", directory / "key.json")
        os.replace(_library(work, name), _library(directory, name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return module


def load():
    """The compiled kernels module, or None if it cannot be built here."""
    global _module, _failure
    if _module is not None or _failure is not None:
        return _module
    if os.environ.get("TBOTAN_NATIVE", "1") == "0":
        _failure = "disabled by TBOTAN_NATIVE=0"
        return None
    try:
        # The bytes read here are both the ones hashed and the ones compiled.
        sources = read_sources(kernel_sources())
        flags = cflags()
        name = "tbotan_kalj_cpu_" + build_key(sources, flags, LDFLAGS, build_environment())
        directory = build_directory(name)
        if not _library(directory, name).is_file():
            if shutil.which("ninja") is None:
                try:  # the PyPI package ships the binary; put it on PATH for torch's builder
                    import ninja

                    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
                except ImportError:
                    _failure = "the 'ninja' build tool is missing (pip install ninja)"
                    return None
            directory.mkdir(parents=True, exist_ok=True)
            with _exclusive(directory):
                if not _library(directory, name).is_file():  # or built meanwhile by another
                    _module = _build(directory, name, sources, flags)
        if _module is None:
            _module = _import(directory, name)
    except Exception as exc:  # compiler missing, headers missing, ...
        _failure = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc) else ''}"
        log.warning("native CPU kernels unavailable (%s); using pure-torch kernels", _failure)
        return None
    return _module


def unavailable_reason() -> str | None:
    """Why :func:`load` returned None (None if it has not failed)."""
    return _failure
