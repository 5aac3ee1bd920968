"""Content-addressed cache of stage outputs.

A stage output is stored under a key made of the stage name, its parameters, the fingerprints of
its inputs and the stage's code version, so the same computation is never done twice — across
trials of one sweep, across sweeps over the same data, and across worker processes. Writes go to
a temporary file in the same folder and are renamed into place, so a crash or two processes
writing the same entry never leave a half-written file. A missing entry is computed under a lock
file beside it (`fcntl.flock`, which also holds on NFS with lockd), so workers sharing one cache
directory compute each stage once; entries get the usual permissions (0644 under umask 022), so
a cache can be shared between users; an unreadable or corrupt entry is recomputed with a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

Kind = Literal["frame", "array", "json"]
_SUFFIX = {"frame": ".parquet", "array": ".npy", "json": ".json"}


def stable_hash(value: Any) -> str:
    """sha256 of a canonical JSON rendering (sorted keys; paths and other objects as strings)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def frame_fingerprint(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A hash of a frame's content (values and column names, not its index)."""
    selected = frame if columns is None else frame[list(columns)]
    digest = hashlib.sha256("\x1f".join(map(str, selected.columns)).encode("utf-8"))
    digest.update(str(len(selected)).encode())
    if len(selected):
        digest.update(pd.util.hash_pandas_object(selected, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary path next to `path`, then rename it into place with the
    permissions a plain `open()` would give (mkstemp's are 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held across processes (and hosts sharing an NFS mount) on the file
    `path`, created if needed and never deleted (deleting it would let a waiter lock a stale
    inode). It is made writable by all, so every user sharing the directory can take it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        with contextlib.suppress(PermissionError):  # another user's lock file
            os.fchmod(fd, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


_MISSING = object()


class StageCache:
    """Stage outputs on disk under `root/<stage>/<key><suffix>`, with hit/miss counters."""

    def __init__(self, root: Path | str, *, memory_entries: int = 32) -> None:
        self.root = Path(root)
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        # The most recently used outputs stay in memory too; older ones are read from disk again,
        # so a long sweep over large data does not accumulate every prompt table it built.
        self._memory: OrderedDict[Path, Any] = OrderedDict()
        self._memory_entries = memory_entries

    @staticmethod
    def key(stage: str, *, version: str, params: Mapping[str, Any], inputs: Sequence[str]) -> str:
        return stable_hash({"stage": stage, "version": version, "params": params,
                            "inputs": list(inputs)})[:32]

    def path(self, stage: str, key: str, kind: Kind) -> Path:
        return self.root / stage / f"{key}{_SUFFIX[kind]}"

    def get_or_compute(self, stage: str, *, version: str, params: Mapping[str, Any],
                       inputs: Sequence[str], compute: Callable[[], Any], kind: Kind) -> Any:
        """Return the cached output of `stage` for these parameters and inputs, computing it once."""
        path = self.path(stage, self.key(stage, version=version, params=params, inputs=inputs), kind)
        if path in self._memory:
            self.hits[stage] += 1
            self._memory.move_to_end(path)
            return _copy(self._memory[path])
        value = _read_entry(path, kind, warn=True)
        computed = False
        if value is _MISSING:
            with file_lock(path.with_name(f".{path.name}.lock")):
                value = _read_entry(path, kind, warn=False)  # another worker may have written it
                if value is _MISSING:
                    value, computed = compute(), True
                    _store(path, value, kind)
        (self.misses if computed else self.hits)[stage] += 1
        self._memory[path] = value
        while len(self._memory) > self._memory_entries:
            self._memory.popitem(last=False)
        return _copy(value)

    def counts(self) -> dict[str, dict[str, int]]:
        stages = sorted(set(self.hits) | set(self.misses))
        return {s: {"hits": self.hits[s], "misses": self.misses[s]} for s in stages}

    def totals(self) -> tuple[int, int]:
        return sum(self.hits.values()), sum(self.misses.values())


def _copy(value: Any) -> Any:
    if isinstance(value, pd.DataFrame | np.ndarray):
        return value.copy()
    return json.loads(json.dumps(value)) if isinstance(value, dict | list) else value


def _write(path: Path, value: Any, kind: Kind) -> None:
    if kind == "frame":
        value.to_parquet(path, index=False)
    elif kind == "array":
        with open(path, "wb") as handle:
            np.save(handle, np.asarray(value), allow_pickle=False)
    else:
        path.write_text(json.dumps(value, sort_keys=True), encoding="utf-8")


def _read_entry(path: Path, kind: Kind, *, warn: bool) -> Any:
    """The entry's value, or _MISSING when it does not exist or cannot be read (then it is
    recomputed: a truncated file from a full disk, another user's unreadable file)."""
    if not path.exists():
        return _MISSING
    try:
        return _read(path, kind)
    except Exception as error:  # noqa: BLE001 - parquet, numpy, json and OS errors alike
        if warn:
            warnings.warn(f"stage cache: {path} is unreadable ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}); recomputing it",
                          RuntimeWarning, stacklevel=3)
        return _MISSING


def _store(path: Path, value: Any, kind: Kind) -> None:
    try:
        atomic_write(path, lambda tmp: _write(tmp, value, kind))
    except OSError as error:  # a read-only shared cache: the value is still returned
        warnings.warn(f"stage cache: cannot write {path} ({error.strerror or error}); "
                      "the stage will be computed again next time", RuntimeWarning, stacklevel=3)


def _read(path: Path, kind: Kind) -> Any:
    if kind == "frame":
        return pd.read_parquet(path)
    if kind == "array":
        return np.load(path, allow_pickle=False)
    return json.loads(path.read_text(encoding="utf-8"))
