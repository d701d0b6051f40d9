"""The one subscription primitive: everything lkkit delivers to a reader goes through it.

Events, data messages, data drops and received audio are all `Subscription`s:

```python
async with session.events(lkkit.ParticipantConnected) as joins:
    async for event in joins:
        ...
```

- **Bounded.** At most `buffer` items (and, where the owner sizes its items, at most
  `max_bytes` of them) wait for the reader.
- **One overflow policy** ([`OverflowPolicy`][lkkit.OverflowPolicy]) decides what a
  full buffer does with a new item: `DROP_OLDEST` discards the oldest buffered item and
  counts it in [`dropped`][lkkit.Subscription.dropped]; `FAIL` ends the subscription,
  whose reader gets what was buffered and then
  [`SubscriptionOverflow`][lkkit.SubscriptionOverflow].
- **One lifecycle.** Enter it with `async with` (nothing is delivered before), read with
  `async for` or `receive()`, leave the block or call `aclose()` to stop. It also ends
  when its owner ends (the session closed, the track went away): `async for` then
  stops after the buffered items.
- **One reader.** Two tasks reading one subscription at once is a bug (each would get
  half of the items); the second gets [`SubscriptionBusy`][lkkit.SubscriptionBusy].

The producer side (`_offer`, `_end`) is synchronous and never waits: the SDK's
callbacks deliver through it.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

from ._exceptions import (
    ConfigurationError,
    SessionStateError,
    SubscriptionBusy,
    SubscriptionOverflow,
)

__all__ = ["DEFAULT_BUFFER", "OverflowPolicy", "Subscription"]

logger = logging.getLogger("lkkit")

T_co = TypeVar("T_co", covariant=True)
_S = TypeVar("_S", bound="Subscription[Any]")

DEFAULT_BUFFER = 256
"""Items a subscription buffers before its overflow policy applies."""


class OverflowPolicy(str, enum.Enum):
    """What a subscription whose buffer is full does with a new item."""

    DROP_OLDEST = "drop_oldest"
    """Discard the oldest buffered item and count it in `dropped` (the default)."""
    FAIL = "fail"
    """End the subscription: the reader gets the buffered items, then
    [`SubscriptionOverflow`][lkkit.SubscriptionOverflow]."""


def check_buffer(buffer: object, overflow: object) -> tuple[int, OverflowPolicy]:
    """Validate a subscription's `buffer` and `overflow` arguments."""
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise ConfigurationError(f"buffer must be an int >= 1, got {buffer!r}")
    try:
        policy = OverflowPolicy(overflow)
    except ValueError:
        raise ConfigurationError(f"overflow must be an OverflowPolicy, got {overflow!r}") from None
    return buffer, policy


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    ENDED = "ended"  # the owner ended it: buffered items are still read
    CLOSED = "closed"  # the reader closed it


_OPEN = _State.OPEN


def _no_size(_: object) -> int:
    return 0


class Subscription(Generic[T_co]):
    """A bounded stream of items for one reader; use it as `async with`, then `async for`.

    Made by lkkit ([`session.events`][lkkit.Session.events],
    [`session.data.messages`][lkkit.DataChannel.messages],
    [`session.audio.stream`][lkkit.SessionAudio.stream], ...), never directly.
    See the module docs for the buffer, the overflow policy and the end.
    """

    def __init__(
        self,
        *,
        buffer: int = DEFAULT_BUFFER,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
        max_bytes: int | None = None,
        size_of: Callable[[T_co], int] = _no_size,
        on_open: Callable[[Subscription[T_co]], None] | None = None,
        on_close: Callable[[Subscription[T_co]], None] | None = None,
        on_drop: Callable[[T_co], None] | None = None,
        what: str = "subscription",
        full_warning: str | None = None,
    ) -> None:
        self._buffer, self._policy = check_buffer(buffer, overflow)
        self._full_warning = full_warning
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._on_open = on_open
        self._on_close = on_close
        self._on_drop = on_drop
        self._what = what
        self._items: collections.deque[T_co] = collections.deque()
        # Sizes of the buffered items, kept only when there is a byte bound.
        self._sizes: collections.deque[int] | None = (
            None if max_bytes is None else collections.deque()
        )
        self._bytes = 0
        self._state = _State.NEW
        self._entered = False
        self._overflowed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reader: asyncio.Task[object] | None = None
        self._dropped = 0
        self._warned = False

    # -- the reader's side ---------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Items discarded because the buffer was full (`DROP_OLDEST`)."""
        return self._dropped

    @property
    def buffered(self) -> int:
        """Items waiting to be read."""
        return len(self._items)

    @property
    def overflow(self) -> OverflowPolicy:
        """The policy applied when the buffer is full."""
        return self._policy

    @property
    def ended(self) -> bool:
        """Whether no more items will arrive (buffered ones may still be read)."""
        return self._state in (_State.ENDED, _State.CLOSED)

    async def __aenter__(self: _S) -> _S:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop receiving; buffered items are discarded. Idempotent."""
        self._close()

    def __aiter__(self: _S) -> _S:
        return self

    async def __anext__(self) -> T_co:
        if self._items and self._sizes is None:  # the hot path: items buffered
            return self._items.popleft()
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def receive_nowait(self) -> T_co:
        """The next buffered item.

        Raises:
            anyio.WouldBlock: nothing is buffered now.
            anyio.EndOfStream: the subscription ended and everything was read.
            SubscriptionOverflow: it ended because its buffer overflowed (`FAIL`).
            SessionStateError: it was not entered (`async with`) yet.
        """
        if not self._entered:
            raise SessionStateError(f"enter the {self._what} (`async with`) before reading it")
        if self._items:
            if self._sizes is not None:
                self._bytes -= self._sizes.popleft()
            return self._items.popleft()
        if self._state is _State.OPEN:
            raise anyio.WouldBlock
        if self._overflowed:
            raise SubscriptionOverflow(
                f"this {self._what} fell behind by more than its buffer of {self._buffer} "
                "(OverflowPolicy.FAIL)"
            )
        if self._error is not None:
            raise self._error
        raise anyio.EndOfStream

    async def receive(self) -> T_co:
        """Wait for the next item.

        Raises:
            anyio.EndOfStream: the subscription ended and everything was read.
            SubscriptionOverflow: it ended because its buffer overflowed (`FAIL`).
            SubscriptionBusy: another task is reading it right now.
            SessionStateError: it was not entered (`async with`) yet.
        """
        # Buffered items are taken without a trip through the event loop.
        try:
            return self.receive_nowait()
        except anyio.WouldBlock:
            pass
        task = asyncio.current_task()
        if self._reader is not None and self._reader is not task:
            raise SubscriptionBusy(f"another task is already reading this {self._what}")
        self._reader = task
        try:
            while True:
                waiter = asyncio.get_running_loop().create_future()
                self._waiter = waiter
                try:
                    await waiter
                finally:
                    if self._waiter is waiter:
                        self._waiter = None
                try:
                    return self.receive_nowait()
                except anyio.WouldBlock:
                    continue
        finally:
            self._reader = None

    # -- the owner's side ----------------------------------------------------------------

    def _open(self) -> None:
        if self._entered:
            raise SessionStateError(f"a {self._what} can be entered once")
        self._entered = True
        if self._state is _State.NEW:  # else its owner ended before: it ends at once
            self._state = _State.OPEN
            if self._on_open is not None:
                self._on_open(self)

    @property
    def _accepting(self) -> bool:
        return self._state is _State.OPEN

    def _offer(self, item: T_co) -> bool:  # type: ignore[misc]  # the producer's side
        """Buffer `item` (the overflow policy applies); `False` if it was not taken."""
        # The hot path of every event, message and audio chunk: kept flat.
        if self._state is not _OPEN:
            return False
        items = self._items
        sizes = self._sizes
        if sizes is None:
            if len(items) >= self._buffer and not self._make_room(0):
                return False
        else:
            size = self._size_of(item)
            limit = self._max_bytes or 0
            full = len(items) >= self._buffer or self._bytes + size > limit
            if items and full and not self._make_room(size):
                return False
            sizes.append(size)
            self._bytes += size
        items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def _make_room(self, size: int) -> bool:
        """The buffer is full: apply the overflow policy; whether `size` more fits now."""
        if self._policy is OverflowPolicy.FAIL:
            self._overflowed = True
            logger.warning("lkkit %s overflowed; ending it", self._what)
            self._end()
            return False
        items = self._items
        sizes = self._sizes
        while items and (
            len(items) >= self._buffer
            or (sizes is not None and self._bytes + size > (self._max_bytes or 0))
        ):
            old = items.popleft()
            if sizes is not None:
                self._bytes -= sizes.popleft()
            self._dropped += 1
            if not self._warned:
                self._warned = True
                if self._full_warning is not None:
                    logger.warning("%s", self._full_warning)
                else:
                    logger.warning("lkkit %s is full; dropping its oldest items", self._what)
            if self._on_drop is not None:
                self._on_drop(old)
        return True

    def _end(self, error: BaseException | None = None) -> None:
        """No more items: the reader gets what is buffered, then the end (or `error`)."""
        if self._state in (_State.ENDED, _State.CLOSED):
            return
        was_open = self._state is _State.OPEN
        self._state = _State.ENDED
        self._error = error
        self._wake()
        if was_open and self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    def _close(self) -> None:
        if self._state is _State.CLOSED:
            return
        self._end()
        self._state = _State.CLOSED
        self._items.clear()
        if self._sizes is not None:
            self._sizes.clear()
        self._bytes = 0
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._state.value} buffered={len(self._items)}"
            f"/{self._buffer} dropped={self._dropped}>"
        )
