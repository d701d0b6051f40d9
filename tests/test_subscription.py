"""The one subscription primitive (`lkkit._subscription`): pure unit tests."""

from __future__ import annotations

import anyio
import pytest

import lkkit
from lkkit import OverflowPolicy, Subscription

pytestmark = pytest.mark.anyio


async def test_drop_oldest_keeps_the_newest_and_counts() -> None:
    dropped: list[int] = []
    subscription: Subscription[int] = Subscription(buffer=3, on_drop=dropped.append)
    async with subscription:
        for item in range(5):
            assert subscription._offer(item)
        assert subscription.dropped == 2
        assert dropped == [0, 1]
        subscription._end()
        assert [item async for item in subscription] == [2, 3, 4]


async def test_fail_ends_after_what_was_buffered() -> None:
    subscription: Subscription[int] = Subscription(buffer=2, overflow=OverflowPolicy.FAIL)
    async with subscription:
        assert subscription._offer(1)
        assert subscription._offer(2)
        assert not subscription._offer(3)
        assert not subscription._offer(4)  # ended: nothing more is taken
        assert await subscription.receive() == 1
        assert await subscription.receive() == 2
        with pytest.raises(lkkit.SubscriptionOverflow):
            await subscription.receive()


async def test_a_byte_bound_drops_oldest_but_takes_one_large_item() -> None:
    subscription: Subscription[bytes] = Subscription(buffer=10, max_bytes=10, size_of=len)
    async with subscription:
        subscription._offer(b"aaaa")
        subscription._offer(b"bbbb")
        subscription._offer(b"cccc")  # 12 bytes: the oldest goes
        assert subscription.dropped == 1
        subscription._offer(b"x" * 50)  # alone it may exceed the bound
        assert subscription.buffered == 1
        assert subscription.receive_nowait() == b"x" * 50


async def test_two_readers_at_once_are_refused() -> None:
    subscription: Subscription[int] = Subscription()
    async with subscription, anyio.create_task_group() as tg:
        tg.start_soon(subscription.receive)
        await anyio.sleep(0.01)
        with pytest.raises(lkkit.SubscriptionBusy):
            await subscription.receive()
        subscription._offer(1)  # the first reader gets it and finishes
    assert subscription.buffered == 0


async def test_it_must_be_entered_once_and_nothing_arrives_before() -> None:
    subscription: Subscription[int] = Subscription()
    assert not subscription._offer(1)
    with pytest.raises(lkkit.SessionStateError):
        subscription.receive_nowait()
    async with subscription:
        with pytest.raises(lkkit.SessionStateError):
            await subscription.__aenter__()
        with pytest.raises(anyio.WouldBlock):
            subscription.receive_nowait()


async def test_ended_before_entered_ends_at_once_and_close_discards() -> None:
    early: Subscription[int] = Subscription()
    early._end()
    async with early:
        assert [item async for item in early] == []
    subscription: Subscription[int] = Subscription()
    async with subscription:
        subscription._offer(1)
    assert subscription.ended
    assert subscription.buffered == 0  # closing discards
    with pytest.raises(anyio.EndOfStream):
        subscription.receive_nowait()


async def test_a_waiting_reader_wakes_for_an_item_and_for_the_end() -> None:
    subscription: Subscription[int] = Subscription()
    got: list[int] = []

    async def read() -> None:
        got.extend([item async for item in subscription])

    async with subscription, anyio.create_task_group() as tg:
        tg.start_soon(read)
        await anyio.sleep(0.01)
        subscription._offer(7)
        await anyio.sleep(0.01)
        subscription._end()
    assert got == [7]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(lkkit.ConfigurationError):
        Subscription(buffer=0)
    with pytest.raises(lkkit.ConfigurationError):
        Subscription(overflow="sometimes")  # type: ignore[arg-type]
