"""Native CPU kernels of the torch engine, compiled on first use.

``kalj_cpu.cpp`` is built with :func:`torch.utils.cpp_extension.load` (a C++17 compiler and
``ninja`` are needed; both install on any Linux workstation, ``ninja`` from PyPI) with
``-O3 -march=native -fopenmp``.  The build is cached by PyTorch (``TORCH_EXTENSIONS_DIR``,
default ``~/.cache/torch_extensions``) under a name that includes a hash of the source and of
the CPU's instruction-set flags, so a home directory shared by cluster nodes of different CPU
generations never loads a binary built for another instruction set.

:func:`load` returns the module, or None (with the reason in :func:`unavailable_reason`) when
it cannot be built; the engine then falls back to the pure-torch kernels.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
from pathlib import Path

_SOURCE = Path(__file__).with_name("kalj_cpu.cpp")
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


def extension_name() -> str:
    """Name of the cached build: source hash and instruction-set hash."""
    digest = hashlib.sha1(_SOURCE.read_bytes() + _cpu_signature().encode()).hexdigest()[:12]
    return f"tbotan_kalj_cpu_{digest}"


def load():
    """The compiled kernels module, or None if it cannot be built here."""
    global _module, _failure
    if _module is not None or _failure is not None:
        return _module
    if os.environ.get("TBOTAN_NATIVE", "1") == "0":
        _failure = "disabled by TBOTAN_NATIVE=0"
        return None
    if shutil.which("ninja") is None:
        try:  # the PyPI package ships the binary; put it on PATH for torch's builder
            import ninja

            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
        except ImportError:
            _failure = "the 'ninja' build tool is missing (pip install ninja)"
            return None
    try:
        from torch.utils.cpp_extension import load as load_extension

        flags = ["-O3", "-fopenmp", "-std=c++17"]
        if platform.machine() in ("x86_64", "AMD64"):
            flags.append("-march=native")
        else:
            flags.append("-mcpu=native")
        log.info("building native KALJ kernels (first use; cached afterwards)")
        _module = load_extension(
            name=extension_name(),
            sources=[str(_SOURCE)],
            extra_cflags=flags,
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as exc:  # compiler missing, headers missing, ...
        _failure = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc) else ''}"
        log.warning("native CPU kernels unavailable (%s); using pure-torch kernels", _failure)
        return None
    return _module


def unavailable_reason() -> str | None:
    """Why :func:`load` returned None (None if it has not failed)."""
    return _failure
