"""A backbone batch split across cores (runtime/sharding.py): same rows, same order, errors surface."""
from __future__ import annotations

import numpy as np
import pytest

from uehead.runtime import load
from uehead.runtime.sharding import CALL_TOKENS, MIN_SHARD_ROWS, ShardedRunner, balanced_bounds, run_in_calls

from tests.tiny_bundle import make_tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("shard") / "b")


def _texts(n):
    rng = np.random.default_rng(0)
    words = ["good", "bad", "film", "plot", "slow", "fun", "dull", "great"]
    return [" ".join(rng.choice(words, rng.integers(1, 12))) for _ in range(n)]


class _Recorder:
    """A session stand-in: each row's output is its first input id (so order is checkable)."""

    def __init__(self, fail_on_rows=None):
        self.calls, self.fail_on_rows = [], fail_on_rows

    def run(self, names, feeds):
        ids = feeds["input_ids"]
        self.calls.append(ids.shape[0])
        self.widths = getattr(self, "widths", []) + [ids.shape[1]]
        if self.fail_on_rows is not None and ids[0, 0] == self.fail_on_rows:
            raise RuntimeError("part failed")
        return [ids[:, :1].astype(np.float32)]


@pytest.mark.parametrize("shards, rows", [(2, 16), (2, 33), (3, 40), (4, 100)])
def test_parts_are_contiguous_and_rows_come_back_in_order(shards, rows):
    rec = _Recorder()
    feeds = {"input_ids": np.arange(rows, dtype=np.int64)[:, None].repeat(3, axis=1),
             "attention_mask": np.ones((rows, 3), np.int64)}
    out = ShardedRunner(lambda: rec, shards).run("z", feeds)
    np.testing.assert_array_equal(out[:, 0], np.arange(rows))
    assert sorted(rec.calls) == sorted(rows * (i + 1) // shards - rows * i // shards for i in range(shards))


def test_a_failing_part_raises_after_every_part_finished():
    rec = _Recorder(fail_on_rows=10)
    feeds = {"input_ids": np.arange(20, dtype=np.int64)[:, None]}
    with pytest.raises(RuntimeError, match="part failed"):
        ShardedRunner(lambda: rec, 2).run("z", feeds)
    assert len(rec.calls) == 2


def test_threshold_and_arguments():
    runner = ShardedRunner(_Recorder, 2)
    assert not runner.can_shard(2 * MIN_SHARD_ROWS - 1) and runner.can_shard(2 * MIN_SHARD_ROWS)
    with pytest.raises(ValueError, match="at least 2"):
        ShardedRunner(_Recorder, 1)


def test_the_pool_is_rebuilt_in_a_forked_child():
    runner = ShardedRunner(_Recorder, 2)
    feeds = {"input_ids": np.arange(20, dtype=np.int64)[:, None]}
    runner.run("z", feeds)
    first = runner._pool
    runner._pool_pid = -1  # what a fork looks like to the runner: another process id
    runner.run("z", feeds)
    assert runner._pool is not first


def test_the_single_thread_session_is_built_on_the_first_batch_that_splits(bundle):
    model = load(bundle, threads=2)  # load's warm-up predicts one text
    assert model.backbone_shards._session is None
    model.predict(_texts(8))
    assert model.backbone_shards._session is None  # 8 rows: too few to split
    model.predict(_texts(16))
    assert model.backbone_shards._session is not None


def test_load_shards_only_with_several_threads(bundle):
    assert load(bundle, threads=2).backbone_shards is not None
    assert load(bundle, threads=1).backbone_shards is None
    assert load(bundle, threads=2, shard_batches=False).backbone_shards is None


def test_sharded_predictions_equal_whole_batches(bundle):
    texts = _texts(70)
    sharded, whole = load(bundle, threads=2), load(bundle, threads=2, shard_batches=False)
    calls = []
    run = sharded.backbone_shards.run
    sharded.backbone_shards.run = lambda name, feeds, lengths=None: (calls.append(len(feeds["input_ids"]))
                                                                     or run(name, feeds, lengths))
    a, b = sharded.predict(texts, batch_size=32), whole.predict(texts, batch_size=32)
    assert calls == [32, 32]  # the last batch of 6 rows runs whole
    assert a.labels == b.labels
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    for name in a.scores:
        np.testing.assert_allclose(a.scores[name], b.scores[name], atol=1e-6)


def _cost(lengths, bounds):
    return max((b - a) * max(lengths[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))


def _best_cost(lengths, shards):
    """Brute force over every contiguous split with parts of at least MIN_SHARD_ROWS rows."""
    import itertools

    n = len(lengths)
    cuts = range(MIN_SHARD_ROWS, n - MIN_SHARD_ROWS + 1)
    best = None
    for inner in itertools.combinations(cuts, shards - 1):
        bounds = [0, *inner, n]
        if all(b - a >= MIN_SHARD_ROWS for a, b in zip(bounds[:-1], bounds[1:])):
            c = _cost(lengths, bounds)
            best = c if best is None else min(best, c)
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shards", [2, 3])
def test_balanced_bounds_minimise_the_slowest_part(seed, shards):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(shards * MIN_SHARD_ROWS, 40))
    lengths = rng.integers(1, 130, n)
    if seed % 2:
        lengths = np.sort(lengths)  # what the runtime passes: rows sorted by length
    bounds = balanced_bounds(lengths, shards)
    assert bounds[0] == 0 and bounds[-1] == n and len(bounds) == shards + 1
    assert all(b - a >= MIN_SHARD_ROWS for a, b in zip(bounds[:-1], bounds[1:]))
    assert _cost(lengths, bounds) == _best_cost(lengths, shards)


def test_short_rows_make_a_longer_part_and_each_part_drops_its_padding():
    lengths = np.array([3] * 12 + [10] * 4 + [40] * 8)  # sorted, as the runtime sends them
    rec = _Recorder()
    rows, width = len(lengths), int(lengths.max())
    ids = np.zeros((rows, width), np.int64)
    ids[:, 0] = np.arange(rows)
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
    out = ShardedRunner(lambda: rec, 2).run("z", {"input_ids": ids, "attention_mask": mask}, lengths)
    np.testing.assert_array_equal(out[:, 0], np.arange(rows))
    assert sorted(zip(rec.calls, rec.widths)) == [(8, 40), (16, 10)]  # 160 + 320 padded tokens, not 480 + 480
    with pytest.raises(ValueError, match="cannot make"):
        balanced_bounds(np.ones(2 * MIN_SHARD_ROWS - 1), 2)


def test_sharded_predictions_of_mixed_lengths_equal_whole_batches(bundle):
    words = ["good", "bad", "film", "plot"]
    texts = ["good"] * 20 + [" ".join(words * 10)] * 4 + ["bad film"] * 8  # forces uneven parts
    a = load(bundle, threads=2).predict(texts, batch_size=32)
    b = load(bundle, threads=2, shard_batches=False).predict(texts, batch_size=32)
    assert a.labels == b.labels
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    for name in a.scores:
        np.testing.assert_allclose(a.scores[name], b.scores[name], atol=1e-6)


@pytest.mark.parametrize("call_tokens, calls", [(None, [20]), (40, [4] * 5), (45, [4] * 5), (3, [1] * 20),
                                                (1000, [20]), (180, [10, 10]), (70, [7, 7, 6])])
def test_run_in_calls_covers_every_row_once_in_order(call_tokens, calls):
    rec = _Recorder()
    feeds = {"input_ids": np.arange(20, dtype=np.int64)[:, None].repeat(10, axis=1)}
    out = run_in_calls(rec, "z", feeds, call_tokens)
    np.testing.assert_array_equal(out[:, 0], np.arange(20))
    assert rec.calls == calls


def test_each_part_runs_in_calls_of_its_own_width():
    lengths = np.array([4] * 16 + [20] * 8)
    rec = _Recorder()
    ids = np.zeros((24, 20), np.int64)
    ids[:, 0] = np.arange(24)
    out = ShardedRunner(lambda: rec, 2, call_tokens=40).run("z", {"input_ids": ids}, lengths)
    np.testing.assert_array_equal(out[:, 0], np.arange(24))
    assert sorted(zip(rec.calls, rec.widths)) == [(2, 20)] * 4 + [(8, 4), (8, 4)]  # 40 tokens per call at most


def test_call_tokens_of_a_single_thread_model(bundle):
    texts = _texts(40)
    assert load(bundle, threads=1).backbone_call_tokens == CALL_TOKENS
    assert load(bundle, threads=2).backbone_call_tokens is None  # the intra-op session runs whole batches
    assert load(bundle, threads=2).backbone_shards.call_tokens == CALL_TOKENS
    small = load(bundle, threads=1, call_tokens=8).predict(texts)
    whole = load(bundle, threads=1, call_tokens=None).predict(texts)
    assert small.labels == whole.labels
    np.testing.assert_allclose(small.probs, whole.probs, atol=1e-6)
    for bad in (0, -3, 2.5, True, "512"):
        with pytest.raises(ValueError, match="call_tokens"):
            load(bundle, threads=1, call_tokens=bad)
