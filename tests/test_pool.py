"""The per-endpoint shard free list: exact slot accounting under any acquire/release order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshclient._pool import EndpointPool, Shard


class Closed:
    """Records the shards' pools an ``EndpointPool`` closes."""

    def __init__(self) -> None:
        self.pools: list[object] = []

    def __call__(self, pool: object) -> None:
        self.pools.append(pool)


def make_pool(
    cap: int = 1, max_shards: int | None = None, max_idle: int | None = None
) -> tuple[EndpointPool, Closed]:
    closed = Closed()
    return EndpointPool(object, closed, cap=cap, max_shards=max_shards, max_idle=max_idle), closed


@given(
    cap=st.sampled_from([1, 8]),
    max_shards=st.one_of(st.none(), st.integers(1, 6)),
    max_idle=st.one_of(st.none(), st.integers(0, 4)),
    ops=st.lists(st.booleans(), max_size=200),
)
def test_free_list_holds_exactly_the_open_shards_below_their_cap(
    cap, max_shards, max_idle, ops
) -> None:
    pool, closed = make_pool(cap, max_shards, max_idle)
    held: list[Shard] = []
    for acquire in ops:
        if acquire or not held:
            held.append(pool.acquire())
        else:
            pool.release(held.pop(len(held) // 2))
        assert sorted(map(id, pool.free)) == sorted(id(s) for s in pool.shards if s.count < cap)
        assert sum(shard.count for shard in pool.shards) == len(held)
        assert pool.idle == sum(1 for shard in pool.shards if shard.count == 0)
        assert max_shards is None or len(pool.shards) <= max_shards
        assert max_idle is None or pool.idle <= max_idle
        assert not any(shard.pool in closed.pools for shard in pool.shards)


@given(st.integers(1, 50))
def test_a_new_shard_opens_only_when_every_shard_is_full(n: int) -> None:
    pool, _ = make_pool()
    shards = [pool.acquire() for _ in range(n)]
    assert len({id(shard) for shard in shards}) == n == len(pool.shards)


def test_sequential_requests_reuse_one_shard() -> None:
    pool, _ = make_pool(max_shards=100)
    for _ in range(10):
        pool.release(pool.acquire())
    assert len(pool.shards) == 1


def test_the_most_recently_freed_shard_is_used_first() -> None:
    pool, _ = make_pool(max_shards=3)
    a, b, c = (pool.acquire() for _ in range(3))
    assert pool.acquire() is a  # all busy: queue behind the least busy
    for shard in (b, a, c):
        pool.release(shard)
    assert pool.acquire() is c


def test_idle_shards_beyond_the_keepalive_limit_are_closed_oldest_first() -> None:
    pool, closed = make_pool(max_idle=2)
    shards = [pool.acquire() for _ in range(5)]
    for shard in shards:
        pool.release(shard)
    assert closed.pools == [shards[0].pool, shards[1].pool, shards[2].pool]
    assert pool.shards == shards[3:]


def test_retired_pool_closes_idle_shards_now_and_busy_ones_on_release() -> None:
    pool, closed = make_pool()
    busy, idle = pool.acquire(), pool.acquire()
    pool.release(idle)
    pool.retire()
    assert closed.pools == [idle.pool]
    pool.release(busy)
    assert closed.pools == [idle.pool, busy.pool]
    assert pool.shards == []
