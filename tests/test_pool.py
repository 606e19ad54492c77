"""The per-endpoint shard free list: exact slot accounting under any acquire/release order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshclient._pool import EndpointPool


@given(
    cap=st.sampled_from([1, 8]),
    max_shards=st.one_of(st.none(), st.integers(1, 6)),
    ops=st.lists(st.booleans(), max_size=200),
)
def test_free_list_holds_exactly_the_shards_below_their_cap(cap, max_shards, ops) -> None:
    pool = EndpointPool(object, cap, max_shards)
    held: list[int] = []
    for acquire in ops:
        if acquire or not held:
            held.append(pool.acquire())
        else:
            pool.release(held.pop(len(held) // 2))
        assert sorted(pool.free) == [i for i, n in enumerate(pool.counts) if n < cap]
        assert sum(pool.counts) == len(held)
        assert max_shards is None or len(pool.shards) <= max_shards


@given(st.integers(1, 50))
def test_a_new_shard_opens_only_when_every_shard_is_full(n: int) -> None:
    pool = EndpointPool(object, 1, None)
    assert [pool.acquire() for _ in range(n)] == list(range(n))


def test_sequential_requests_reuse_one_shard() -> None:
    pool = EndpointPool(object, 1, 100)
    for _ in range(10):
        pool.release(pool.acquire())
    assert len(pool.shards) == 1
