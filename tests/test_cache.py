import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cache import StageCache, frame_fingerprint, stable_hash

REPO = Path(__file__).resolve().parents[1]


def test_computes_once_and_reuses_across_instances(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"text": ["a", "b"]})

    cache = StageCache(tmp_path)
    for _ in range(3):
        out = cache.get_or_compute("LT", version="1", params={"x": 1}, inputs=["f"],
                                   compute=compute, kind="frame")
    assert list(out["text"]) == ["a", "b"] and len(calls) == 1
    assert cache.counts() == {"LT": {"hits": 2, "misses": 1}}
    again = StageCache(tmp_path)  # a second sweep / another process
    again.get_or_compute("LT", version="1", params={"x": 1}, inputs=["f"], compute=compute, kind="frame")
    assert len(calls) == 1 and again.counts()["LT"] == {"hits": 1, "misses": 0}


def test_key_changes_with_params_inputs_and_version(tmp_path):
    keys = {StageCache.key("s", version=v, params=p, inputs=i)
            for v, p, i in [("1", {}, ["a"]), ("2", {}, ["a"]), ("1", {"k": 1}, ["a"]), ("1", {}, ["b"])]}
    assert len(keys) == 4


def test_returned_values_are_copies(tmp_path):
    cache = StageCache(tmp_path)
    first = cache.get_or_compute("a", version="1", params={}, inputs=[], kind="array",
                                 compute=lambda: np.arange(3))
    first[0] = 99
    second = cache.get_or_compute("a", version="1", params={}, inputs=[], kind="array",
                                  compute=lambda: np.arange(3))
    assert second.tolist() == [0, 1, 2]


def test_failed_compute_leaves_nothing_behind(tmp_path):
    cache = StageCache(tmp_path)

    def boom():
        raise RuntimeError("boom")

    try:
        cache.get_or_compute("a", version="1", params={}, inputs=[], kind="json", compute=boom)
    except RuntimeError:
        pass
    # only the (empty, reusable) lock file of the entry remains
    key = StageCache.key("a", version="1", params={}, inputs=[])
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f".{key}.json.lock"]


def test_fingerprints_depend_on_content_only():
    a = pd.DataFrame({"x": [1, 2], "y": ["p", "q"]})
    b = a.copy()
    b.index = [10, 11]
    assert frame_fingerprint(a) == frame_fingerprint(b)
    assert frame_fingerprint(a) != frame_fingerprint(a.assign(y=["p", "r"]))
    assert frame_fingerprint(a, ["x"]) == frame_fingerprint(a.assign(y=["z", "z"]), ["x"])
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})


def test_memory_layer_is_bounded_and_falls_back_to_disk(tmp_path):
    cache = StageCache(tmp_path, memory_entries=2)
    for i in range(5):
        cache.get_or_compute("s", version="1", params={"i": i}, inputs=[], kind="json",
                             compute=lambda i=i: {"i": i})
    assert len(cache._memory) == 2
    again = cache.get_or_compute("s", version="1", params={"i": 0}, inputs=[], kind="json",
                                 compute=lambda: {"i": "recomputed"})
    assert again == {"i": 0} and cache.counts()["s"] == {"hits": 1, "misses": 5}


def test_entries_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        cache = StageCache(tmp_path)
        cache.get_or_compute("s", version="1", params={}, inputs=[], kind="json", compute=lambda: [1])
    finally:
        os.umask(old)
    entry = cache.path("s", StageCache.key("s", version="1", params={}, inputs=[]), "json")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o644


@pytest.mark.parametrize("kind", ["frame", "array", "json"])
def test_a_corrupt_entry_is_recomputed_with_a_warning_and_rewritten(tmp_path, kind):
    values = {"frame": pd.DataFrame({"x": [1, 2]}), "array": np.arange(3), "json": {"a": 1}}
    StageCache(tmp_path).get_or_compute("s", version="1", params={}, inputs=[], kind=kind,
                                        compute=lambda: values[kind])
    entry = next(p for p in (tmp_path / "s").iterdir() if not p.name.startswith("."))
    entry.write_bytes(entry.read_bytes()[:5])  # a truncated write (full disk, killed copy)
    cache = StageCache(tmp_path)
    with pytest.warns(RuntimeWarning, match="unreadable.*recomputing"):
        out = cache.get_or_compute("s", version="1", params={}, inputs=[], kind=kind,
                                   compute=lambda: values[kind])
    assert cache.counts()["s"] == {"hits": 0, "misses": 1}
    assert str(out) == str(values[kind])
    again = StageCache(tmp_path)
    again.get_or_compute("s", version="1", params={}, inputs=[], kind=kind, compute=lambda: None)
    assert again.counts()["s"] == {"hits": 1, "misses": 0}  # the rewritten entry reads back


_WORKER = textwrap.dedent("""
    import sys, time, os
    import pandas as pd
    from harness.cache import StageCache
    root, log, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    def compute():
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\\n")
        time.sleep(1.0)  # long enough that the other process asks while this one computes
        return pd.DataFrame({"text": ["shared"]})
    time.sleep(max(0.0, start - time.time()))
    cache = StageCache(root)
    out = cache.get_or_compute("LT", version="1", params={}, inputs=["f"], compute=compute, kind="frame")
    print(list(out["text"]), cache.counts()["LT"])
""")


def test_two_processes_asking_for_one_stage_compute_it_once(tmp_path):
    log = tmp_path / "computed.log"
    start = time.time() + 3.0  # both interpreters are up by then and ask at the same instant
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path / "cache"), str(log),
                               str(start)], cwd=REPO, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert len(log.read_text().splitlines()) == 1
    assert sorted(o.strip() for o in outputs) == [
        "['shared'] {'hits': 0, 'misses': 1}", "['shared'] {'hits': 1, 'misses': 0}"]
