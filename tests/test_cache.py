import numpy as np
import pandas as pd

from harness.cache import StageCache, frame_fingerprint, stable_hash


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
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


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
