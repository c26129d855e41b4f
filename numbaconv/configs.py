"""The YAML configuration cache: tuned schedules per device, looked up at call time.

One file per device key, named ``<key>.yaml``: for the CPU its model, SIMD features and core
count; for CUDA the GPU's name and compute capability (``device="cuda"``, whose entries
hold :class:`~numbaconv.cuda.schedule.CudaSchedule` knobs and the kernel's registers)::

    format: numbaconv-configs/1
    device: {key: ..., cpu: ..., llvm_cpu: ..., simd: [...], cores: 2}
    numba: 0.68.1
    entries:
      forward|float32|N1-H56-W56-C64-K64-R3-S3-s1x1-d1x1-p1,1,1,1:
        {op: forward, dtype: float32, geometry: {...}, schedule: {...}, seconds: ...,
         gflops: ..., default_seconds: ..., date: ...}

Read from ``$NUMBACONV_CONFIG_DIR`` if set, else ``configs/`` under numbaconv's cache root
(:func:`numbaconv.paths.cache_root`), then the project's shipped ``configs/``; an entry in
an earlier directory wins. Schedules are parsed by the device's family registry (an entry
an older version wrote is migrated by its family). Files are parsed with a safe loader,
kept in memory, and re-read when their size or modification time changes. A corrupt,
truncated, foreign or stale file (another device, another numba version, another format)
is skipped with one logged warning: lookups then fall back to the heuristic, never raise.

Writes (:func:`save_entries`) lock the file, merge with what is on disk, write a
temporary file and rename it over the old one: concurrent tuners lose no entry, and a
reader never sees a partial file.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import yaml

from .geometry import ConvGeometry, geometry_key
from .machine import this_machine
from .paths import CACHE_ENV, cache_root
from .threads import ProcessLock

DEVICES = ("cpu", "cuda")

log = logging.getLogger("numbaconv")

FORMAT = "numbaconv-configs/1"
CONFIG_ENV = "NUMBACONV_CONFIG_DIR"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "configs"
#: libyaml's safe loader when PyYAML was built with it (much faster), else the pure one.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def device_info(device: str = "cpu") -> dict:
    """The identity of the CPU, or of the current GPU (``device="cuda"``)."""
    if device == "cuda":
        from .cuda.runtime import device_info as gpu_device

        return gpu_device()
    return this_machine().to_dict()


def registry(device: str):
    """The family registry whose schedules a device's files hold."""
    if device == "cuda":
        from .cuda.families import CUDA

        return CUDA
    from .cpu.families import CPU

    return CPU


def entry_key(primitive: str, dtype: str, g: ConvGeometry) -> str:
    return f"{primitive}|{dtype}|{geometry_key(g)}"


def geometry_to_dict(g: ConvGeometry) -> dict:
    return {name: getattr(g, name) for name in ConvGeometry.__dataclass_fields__}


def config_dirs() -> list[Path]:
    """Where config files are read from, first match wins."""
    first = Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else cache_root() / "configs"
    return [first, SHIPPED_DIR]


def user_config_path(device: str = "cpu") -> Path:
    """The file the tuner writes by default."""
    return config_dirs()[0] / f"{device_info(device)['key']}.yaml"


@dataclass(frozen=True)
class Tuned:
    """One cache entry: the schedule and where it came from."""

    schedule: object  # a family's Schedule
    path: Path
    geometry: ConvGeometry
    seconds: float


def _stat_signature(path: Path):
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


#: How long a files signature stands for other processes' writes: every op call asks for
#: one, and two ``stat`` calls cost more than a small layer's bookkeeping. Writes by this
#: process (and :func:`forget`) are seen at once.
SIGNATURE_SECONDS = 0.1
_signatures: dict = {}  # device -> (monotonic time, signature)


def files_signature(device: str = "cpu") -> tuple:
    """Changes whenever a config file appears, disappears or is rewritten (by another
    process: within :data:`SIGNATURE_SECONDS`)."""
    now = time.monotonic()
    found = _signatures.get(device)
    if found is not None and now - found[0] < SIGNATURE_SECONDS:
        return found[1]
    signature = _stat_files(device)
    _signatures[device] = (now, signature)
    return signature


def _stat_files(device: str) -> tuple:
    signature = []
    for path in _config_file_names(device):
        try:
            stat = os.stat(path)
            signature.append((stat.st_mtime_ns, stat.st_size))
        except OSError:
            signature.append(None)
    return tuple(signature)


class _FileCache:
    """Parsed config files, re-read when they change on disk."""

    def __init__(self):
        self._lock = ProcessLock()
        self._files: dict[Path, tuple] = {}  # path -> (stat signature, entries)
        self._warned: set = set()

    def entries(self, path: Path, device: str = "cpu") -> dict:
        return self._read(path, device)[0]

    def calibration(self, path: Path, device: str = "cpu") -> dict | None:
        return self._read(path, device)[1]

    def _read(self, path: Path, device: str) -> tuple:
        """(entries, calibration) of a file, parsed again only when it changed."""
        signature = _stat_signature(path)
        if signature is None:
            return {}, None
        cached = self._files.get(path)
        if cached and cached[0] == signature:
            return cached[1]
        with self._lock:
            parsed = self._parse(path, device)
            self._files[path] = (signature, parsed)
            return parsed

    def _warn(self, path: Path, reason: str):
        if (path, reason) not in self._warned:
            self._warned.add((path, reason))
            log.warning("numbaconv: ignoring config file %s: %s; untuned shapes use the "
                        "default heuristic", path, reason)

    def _parse(self, path: Path, device: str) -> dict:
        try:
            data = yaml.load(path.read_text(), Loader=_SAFE_LOADER)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            self._warn(path, f"unreadable ({type(error).__name__}: {str(error)[:120]})")
            return {}, None
        reason = check_header(data, device)
        if reason:
            self._warn(path, reason)
            return {}, None
        calibration = data.get("calibration")
        if calibration is not None and not isinstance(calibration, dict):
            self._warn(path, "calibration is not a mapping")
            calibration = None
        entries = {}
        families = registry(device)
        for key, entry in (data.get("entries") or {}).items():
            try:
                geometry = ConvGeometry(**entry["geometry"])
                schedule = families.parse(entry["schedule"])
                entries[key] = Tuned(schedule, path, geometry, float(entry.get("seconds", 0.0)))
            except (KeyError, TypeError, ValueError) as error:
                self._warn(path, f"entry {key!r} is malformed ({error})")
        return entries, calibration

    def forget(self):
        with self._lock:
            self._files.clear()
            self._warned.clear()


_cache = _FileCache()


def check_header(data, device: str = "cpu") -> str | None:
    """Why a parsed file is not usable on this machine, or None."""
    if not isinstance(data, dict):
        return "not a mapping (truncated or not a numbaconv config)"
    if data.get("format") != FORMAT:
        return f"format {data.get('format')!r}, expected {FORMAT!r}"
    found = data.get("device")
    here = device_info(device)["key"]
    if not isinstance(found, dict) or found.get("key") != here:
        found = found.get("key") if isinstance(found, dict) else found
        return f"tuned for device {found!r}, this is {here!r}"
    if data.get("numba") != numba.__version__:
        return f"tuned with numba {data.get('numba')}, this is {numba.__version__} (stale)"
    if not isinstance(data.get("entries"), (dict, type(None))):
        return "entries is not a mapping"
    return None


_file_names: dict = {}  # device -> (environment, file names)


def _config_file_names(device: str = "cpu") -> tuple:
    """The config files as strings, recomputed only when the environment changes."""
    environment = (os.environ.get(CONFIG_ENV), os.environ.get(CACHE_ENV),
                   os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"), SHIPPED_DIR)
    known = _file_names.get(device)
    if known is None or known[0] != environment:
        key = device_info(device)["key"]
        known = (environment, tuple(str(directory / f"{key}.yaml") for directory in config_dirs()))
        _file_names[device] = known
    return known[1]


def config_files(device: str = "cpu") -> list[Path]:
    return [Path(name) for name in _config_file_names(device)]


def lookup(primitive: str, dtype: str, g: ConvGeometry, device: str = "cpu") -> Tuned | None:
    """The tuned entry for exactly this (primitive, dtype, geometry), if any."""
    key = entry_key(primitive, dtype, g)
    for path in config_files(device):
        tuned = _cache.entries(path, device).get(key)
        if tuned is not None:
            return tuned
    return None


def tuned_entries(primitive: str, dtype: str, device: str = "cpu") -> list[Tuned]:
    """Every tuned entry of a primitive and dtype, across files (earlier files win)."""
    prefix = f"{primitive}|{dtype}|"
    found: dict[str, Tuned] = {}
    for path in config_files(device):
        for key, tuned in _cache.entries(path, device).items():
            if key.startswith(prefix):
                found.setdefault(key, tuned)
    return list(found.values())


def calibration(device: str = "cpu") -> dict | None:
    """The calibration of this device (:mod:`numbaconv.cpu.calibration`) from the first
    config file that has one, or None."""
    for path in config_files(device):
        found = _cache.calibration(path, device)
        if found:
            return found
    return None


def openmp_spin_count(device: str = "cpu") -> str | None:
    """The GNU OpenMP spin count this device's calibration measured
    (:func:`numbaconv.cpu.calibration.measure_openmp_spin`), or None."""
    found = ((calibration(device) or {}).get("openmp") or {}).get("spin_count")
    return str(found) if found else None


def file_calibration(path: Path, device: str = "cpu") -> dict | None:
    """The calibration section of one config file, or None."""
    return _cache.calibration(Path(path), device)


def entry_count(path: Path, device: str = "cpu") -> int:
    """Usable entries of one config file (0 when absent or rejected)."""
    return len(_cache.entries(Path(path), device))


def forget():
    """Drop the in-memory copies (tests; files are re-read on the next lookup anyway)."""
    _cache.forget()
    _signatures.clear()


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def make_entry(primitive: str, dtype: str, g: ConvGeometry, schedule, seconds: float,
               default_seconds: float) -> dict:
    return {"op": primitive, "dtype": dtype, "geometry": geometry_to_dict(g),
            "schedule": schedule.to_dict(), "seconds": float(f"{seconds:.6g}"),
            "gflops": round(g.flops / seconds / 1e9, 2),
            "default_seconds": float(f"{default_seconds:.6g}"),
            "date": datetime.date.today().isoformat()}


def save_entries(path: Path, new_entries: dict, device: str = "cpu"):
    """Merge ``new_entries`` (entry key -> entry dict) into the file at ``path``."""
    _update(path, device, lambda entries, calibration: ({**entries, **new_entries}, calibration))


def save_calibration(path: Path, found: dict, device: str = "cpu"):
    """Write ``found`` as the file's calibration, keeping its entries."""
    _update(path, device, lambda entries, calibration: (entries, found))


def _update(path: Path, device: str, change):
    """Rewrite the file at ``path`` (locked, atomically) with ``change(entries,
    calibration)`` of what it holds (nothing, if it is missing, broken or foreign)."""
    path = Path(path)
    with _locked(path):
        entries, calibration = {}, None
        try:
            data = yaml.load(path.read_text(), Loader=_SAFE_LOADER)
            if check_header(data, device) is None:
                entries = dict(data.get("entries") or {})
                calibration = data.get("calibration")
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            pass  # a missing or broken file is replaced
        entries, calibration = change(entries, calibration)
        document = {"format": FORMAT, "device": device_info(device), "numba": numba.__version__}
        if calibration:
            document["calibration"] = calibration
        document["entries"] = dict(sorted(entries.items()))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                yaml.safe_dump(document, handle, sort_keys=False, default_flow_style=None,
                               width=100)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            _signatures.clear()
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
