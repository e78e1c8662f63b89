"""`PrepareOnReuse`: prepared at the chosen use, by identity, bounded, safe from two threads."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from tilesam.decode.reuse import PrepareOnReuse


def _counting() -> tuple[dict[str, int], object, object]:
    calls = {"make": 0, "prepare": 0}

    def make() -> str:
        calls["make"] += 1
        return "plain"

    def prepare(value: str) -> str:
        calls["prepare"] += 1
        return value + "+prepared"

    return calls, make, prepare


@pytest.mark.parametrize("at_use", [2, 3, 5])
def test_prepared_once_at_the_chosen_use(at_use: int) -> None:
    calls, make, prepare = _counting()
    reuse = PrepareOnReuse(at_use=at_use)
    features = np.zeros((4, 2, 2), np.float32)
    got = [reuse.get(features, make, prepare) for _ in range(at_use + 3)]
    assert got == ["plain"] * (at_use - 1) + ["plain+prepared"] * 4
    assert calls == {"make": 1, "prepare": 1}


def test_windows_and_features_are_told_apart_and_the_oldest_forgotten() -> None:
    calls, make, prepare = _counting()
    reuse = PrepareOnReuse(size=2, at_use=2)
    a, b = np.zeros(3), np.zeros(3)  # equal values, other arrays
    reuse.get(a, make, prepare)
    assert reuse.get(a, make, prepare, key=(0, 8, 0, 8)) == "plain"  # a window: its own side
    assert reuse.get(b, make, prepare) == "plain"  # evicts a's whole-grid side, the oldest
    assert reuse.kept(a) is None
    assert reuse.kept(a, key=(0, 8, 0, 8)) == "plain"
    assert reuse.get(b, make, prepare) == "plain+prepared"
    assert calls == {"make": 3, "prepare": 1}


class _Features:
    """A small object: CPython hands a freed one's address to the next of its kind."""


def test_features_gone_do_not_lend_their_side_to_new_ones_at_the_same_address(
    monkeypatch,
) -> None:
    """Features are known by their address (``id``), which Python hands to new objects once
    the old ones are gone: the map must tell them apart. Every `_Features` is given the same
    address here, so the reuse happens on every run, not when the allocator happens to."""
    import tilesam.decode.reuse as reuse_module

    monkeypatch.setattr(reuse_module, "id", lambda obj: 42, raising=False)
    calls, make, prepare = _counting()
    reuse = PrepareOnReuse(at_use=2)
    features = _Features()
    reuse.get(features, make, prepare)
    assert reuse.get(features, make, prepare) == "plain+prepared"
    del features
    gc.collect()
    fresh = _Features()  # at the old one's address
    assert reuse.kept(fresh) is None
    assert reuse.get(fresh, make, prepare) == "plain"  # its first use, not the old side


def test_values_not_kept_are_made_again_until_prepared() -> None:
    """torch's made value holds the features' memory: not kept, so that the map never keeps
    features alive; prepared from a fresh one."""
    calls, make, prepare = _counting()
    reuse = PrepareOnReuse(at_use=3, keep_made=False)
    features = np.zeros(3)
    got = [reuse.get(features, make, prepare) for _ in range(4)]
    assert got == ["plain", "plain", "plain+prepared", "plain+prepared"]
    assert calls == {"make": 3, "prepare": 1}
    assert reuse.kept(features) == "plain+prepared"
    other = np.zeros(3)
    reuse.get(other, make, prepare)
    assert reuse.kept(other) is None  # seen, nothing kept


def test_features_without_weak_references_are_decoded_as_they_are() -> None:
    calls, make, prepare = _counting()
    reuse = PrepareOnReuse(at_use=2)
    features = (1, 2, 3)  # a tuple takes no weak reference
    assert [reuse.get(features, make, prepare) for _ in range(3)] == ["plain"] * 3
    assert calls == {"make": 3, "prepare": 0}


@pytest.mark.parametrize("keep", [True, False], ids=["kept", "made-again"])
def test_two_threads_at_once_neither_fail_nor_mix_features(keep: bool) -> None:
    """The QGIS dock answers clicks in the GUI thread while a task propagates: both go
    through one predictor's map, which must neither raise nor hand one thread's side to
    the other's features."""
    reuse: PrepareOnReuse[tuple[int, str]] = PrepareOnReuse(size=3, at_use=2, keep_made=keep)
    arrays = [np.full(4, i) for i in range(12)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(offset: int) -> None:
        start.wait()
        try:
            for n in range(3000):
                i = (n * 7 + offset) % len(arrays)
                value = reuse.get(arrays[i], lambda i=i: (i, "plain"), lambda v: (v[0], "prep"))
                assert value[0] == i
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(reuse._seen) <= 3


def test_at_use_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at_use"):
        PrepareOnReuse(at_use=1)
