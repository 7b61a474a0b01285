"""C++ CPU kernels (XLA FFI custom calls), compiled on first use and cached.

The sources ship in this package. :func:`available` compiles ``local_filter.cc`` with the system
C++ compiler (``$CXX``, else ``c++``, ``g++`` or ``clang++``) against the FFI headers of the
installed jaxlib, for this machine's CPU (``-march=native``), into a cache directory
(``$DFN_JAX_CACHE_DIR``, else ``~/.cache/dfn_jax/kernels``). The file name carries a hash of
everything that changes the binary (source, flags, compiler and its version, jaxlib version, CPU
model and features), so an upgrade compiles afresh and a stale library is never loaded.
Concurrent processes (pytest-xdist workers) serialise on a lock file and write through a temporary
file renamed into place, so nobody loads a half-written library. The library is then loaded with
``ctypes`` and its handlers registered with XLA once per process.

When there is no compiler, compilation fails, or ``DFN_JAX_CPU_KERNEL=0``, :func:`available`
returns ``False`` after one warning saying why, and the ops use their XLA implementations.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import warnings

import jax
import jaxlib

try:
    import fcntl
except ImportError:  # not POSIX: no lock, the atomic rename still keeps the cache consistent
    fcntl = None

SOURCE = pathlib.Path(__file__).with_name("local_filter.cc")

# FFI target name registered with XLA -> exported handler symbol in the library.
TARGETS = {
    "dfn_jax_local_filter": "DfnJaxLocalFilter",
    "dfn_jax_local_filter_adjoint": "DfnJaxLocalFilterAdjoint",
    "dfn_jax_local_filter_outer": "DfnJaxLocalFilterOuter",
    "dfn_jax_local_filter_backward": "DfnJaxLocalFilterBackward",
}

FLAGS = (
    "-O3",
    "-march=native",  # compiled where it runs; the cache key includes the CPU
    "-std=c++17",
    "-ffp-contract=fast",  # fused multiply-adds (ISO mode turns them off)
    "-fPIC",
    "-shared",
)

DISABLE_ENV = "DFN_JAX_CPU_KERNEL"
CACHE_ENV = "DFN_JAX_CACHE_DIR"

_lock = threading.Lock()
_status: dict | None = None  # set once per process by `available`
_library = None  # keeps the loaded library alive


def available() -> bool:
    """Whether the C++ kernels are registered with XLA; builds and loads them on the first call."""
    global _status
    if _status is None:
        with _lock:
            if _status is None:
                status = _build_and_register()
                if not status["available"]:
                    warnings.warn(
                        f"dfn_jax: the C++ CPU kernel of dynamic_local_filter is not used "
                        f"({status['reason']}); falling back to the XLA fused implementation, "
                        f"which is correct but slower on CPU.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                _status = status
    return _status["available"]


def status() -> dict:
    """What :func:`available` found: ``available``, ``reason`` or ``library`` and ``compile_s``
    (``0.0`` when the library came from the cache)."""
    available()
    return dict(_status)


def cache_dir() -> pathlib.Path:
    default = pathlib.Path.home() / ".cache" / "dfn_jax" / "kernels"
    return pathlib.Path(os.environ.get(CACHE_ENV) or default)


def _compiler() -> list[str] | None:
    if os.environ.get("CXX"):
        return shlex.split(os.environ["CXX"])
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def _cpu_signature() -> str:
    """CPU model and feature flags (Linux), so that a shared cache never serves a library built
    with ``-march=native`` for another CPU."""
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    keep = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in keep}))


def _build_and_register() -> dict:
    if os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return {"available": False, "reason": f"disabled by {DISABLE_ENV}=0"}
    cxx = _compiler()
    if cxx is None:
        return {"available": False, "reason": "no C++ compiler found (set CXX)"}
    try:
        path, compile_s = _build(cxx)
        _register(path)
    except Exception as err:  # compiler errors, unwritable cache, a library that fails to load
        return {"available": False, "reason": f"{type(err).__name__}: {err}"}
    return {"available": True, "library": str(path), "compile_s": compile_s}


def _build(cxx: list[str]) -> tuple[pathlib.Path, float]:
    """Returns the cached library for this source/compiler/jaxlib/CPU, compiling it if needed."""
    try:
        version = subprocess.run(
            [*cxx, "--version"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise RuntimeError(f"C++ compiler {shlex.join(cxx)!r} does not run: {err}") from err
    key = hashlib.sha256()
    for part in (
        SOURCE.read_bytes(),
        repr(FLAGS).encode(),
        shlex.join(cxx).encode(),
        version.encode(),
        jaxlib.__version__.encode(),
        platform.machine().encode(),
        _cpu_signature().encode(),
    ):
        key.update(hashlib.sha256(part).digest())
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{SOURCE.stem}-{key.hexdigest()[:20]}.so"
    with open(directory / f"{target.name}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be compiling the same file
        if target.exists():
            return target, 0.0
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.stem}-", suffix=".so")
        os.close(fd)
        try:
            cmd = [*cxx, *FLAGS, "-isystem", jax.ffi.include_dir(), str(SOURCE), "-o", tmp]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            compile_s = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(
                    f"compiling {SOURCE.name} failed ({shlex.join(cmd)}):\n{proc.stderr[-2000:]}"
                )
            os.replace(tmp, target)  # atomic: readers see no file or a complete one
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target, compile_s


def _register(path: pathlib.Path) -> None:
    global _library
    library = ctypes.CDLL(str(path))
    for name, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(
            name, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
        )
    _library = library
