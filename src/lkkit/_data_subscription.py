"""`DataSubscription`: one subscriber's bounded queue of data messages or drops."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from types import TracebackType
from typing import Generic, Protocol, TypeVar

import anyio

from ._exceptions import SessionStateError

__all__ = ["DataSubscription"]

T = TypeVar("T")


class _Owner(Protocol):
    def _attach(self, subscription: DataSubscription[T]) -> None: ...
    def _detach(self, subscription: DataSubscription[T]) -> None: ...
    def _expiry_wait(self) -> float | None: ...
    def _expire_now(self) -> None: ...


class DataSubscription(Generic[T]):
    """A subscriber's queue: use it as `async with`, then `async for`.

    ```python
    async with session.data.messages("chat") as messages:
        async for message in messages:
            print(message.sender, message.text)
    ```

    It receives what arrives after `async with` entered, and ends (the `async for`
    stops, after what is already queued) when the session ends or the block exits.

    The queue is bounded: at most `max_buffered` items and, for messages,
    `max_buffered_bytes` payload bytes. When it is full, a new item is not queued
    for this subscriber: a message is reported as a `SUBSCRIBER_FULL` drop, a drop is
    counted in `DataStats.drops_unreported`. Other subscribers are unaffected.
    """

    def __init__(
        self,
        owner: _Owner,
        *,
        accepts: Callable[[T], bool],
        size_of: Callable[[T], int],
        max_buffered: int,
        max_buffered_bytes: int,
        topics: frozenset[str] | None = None,
    ) -> None:
        self._owner = owner
        self._topics = topics
        self._accepts = accepts
        self._size_of = size_of
        self._max_items = max_buffered
        self._max_bytes = max_buffered_bytes
        self._items: collections.deque[tuple[T, int]] = collections.deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self._entered = False
        self._ended = False

    # -- the owner's side ----------------------------------------------------------------

    def _wants(self, item: T) -> bool:
        return not self._ended and self._accepts(item)

    def _offer(self, item: T) -> bool:
        """Queue `item`; `False` when the queue is full (the item is not queued)."""
        size = self._size_of(item)
        if len(self._items) >= self._max_items or (
            self._items and self._bytes + size > self._max_bytes
        ):
            return False
        self._items.append((item, size))
        self._bytes += size
        self._ready.set()
        return True

    def _end(self) -> None:
        self._ended = True
        self._ready.set()

    # -- the subscriber's side -----------------------------------------------------------

    @property
    def topics(self) -> frozenset[str] | None:
        """The topics this subscription receives; `None` for all."""
        return self._topics

    @property
    def buffered(self) -> int:
        """Items queued and not yet received."""
        return len(self._items)

    def receive_nowait(self) -> T:
        """The next queued item.

        Raises:
            anyio.WouldBlock: nothing is queued now.
            anyio.EndOfStream: the subscription has ended and nothing is left.
        """
        self._check_entered()
        if self._items:
            item, size = self._items.popleft()
            self._bytes -= size
            return item
        if self._ended:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self) -> T:
        """Wait for the next item.

        Raises:
            anyio.EndOfStream: the subscription has ended and nothing is left.
        """
        self._check_entered()
        while True:
            try:
                return self.receive_nowait()
            except anyio.WouldBlock:
                pass
            self._ready.clear()
            # No background timer: a waiting subscriber wakes up when an incomplete
            # message could time out, so stalled messages are reported promptly.
            wait = self._owner._expiry_wait()
            if wait is None:
                await self._ready.wait()
            else:
                with anyio.move_on_after(wait):
                    await self._ready.wait()
                self._owner._expire_now()

    def _check_entered(self) -> None:
        if not self._entered:
            raise SessionStateError("use the subscription as `async with` before reading it")

    def __aiter__(self) -> DataSubscription[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> DataSubscription[T]:
        if self._entered:
            raise SessionStateError("a subscription can be entered once")
        self._entered = True
        self._owner._attach(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving; what is queued is discarded. Idempotent."""
        if not self._ended:
            self._end()
        self._items.clear()
        self._bytes = 0
        self._owner._detach(self)
