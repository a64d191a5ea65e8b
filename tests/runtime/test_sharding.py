"""A backbone batch split across cores (runtime/sharding.py): same rows, same order, errors surface."""
from __future__ import annotations

import numpy as np
import pytest

from uehead.runtime import load
from uehead.runtime.sharding import MIN_SHARD_ROWS, ShardedRunner

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
    sharded.backbone_shards.run = lambda name, feeds: calls.append(len(feeds["input_ids"])) or run(name, feeds)
    a, b = sharded.predict(texts, batch_size=32), whole.predict(texts, batch_size=32)
    assert calls == [32, 32]  # the last batch of 6 rows runs whole
    assert a.labels == b.labels
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    for name in a.scores:
        np.testing.assert_allclose(a.scores[name], b.scores[name], atol=1e-6)
