"""Received data packets to whole messages: raw packets pass through, lkkit's chunks are
reassembled by the one chunk codec (`lkkit._chunking`), and what cannot be completed
is reported as a drop."""

from __future__ import annotations

import time
from collections.abc import Callable

from .._chunking import MAGIC, Complete, Dropped, DropReason, Raw, Reassembler, Stored
from .._events import DataReceived
from ._types import (
    DataDropped,
    DataKind,
    DataMessage,
    DataOptions,
    drop_reason_from_codec,
)

__all__ = ["PacketReceiver"]

_Key = tuple[str | None, bytes]


class PacketReceiver:
    """Feeds the chunk codec and names each result: a message, or a drop."""

    def __init__(
        self,
        options: DataOptions,
        deliver: Callable[[DataMessage], None],
        report: Callable[[DataDropped], None],
    ) -> None:
        self._deliver = deliver
        self._report = report
        self._reassembler = self._new_reassembler(options)
        # Topic of each incomplete chunked message, for its messages and drops.
        self._pending_topics: dict[_Key, str] = {}
        # Incomplete messages whose first chunks came without identity, and the
        # identity later chunks revealed.
        self._late_senders: dict[bytes, str] = {}
        self.chunked_received = 0

    @staticmethod
    def _new_reassembler(options: DataOptions) -> Reassembler:
        return Reassembler(
            max_pending_bytes=options.max_pending_bytes,
            timeout=options.incomplete_timeout,
            max_pending_messages=options.max_pending_messages,
        )

    @property
    def pending(self) -> bool:
        """Whether an incomplete chunked message is held."""
        return bool(self._pending_topics)

    @property
    def pending_messages(self) -> int:
        return self._reassembler.stats.pending_messages

    @property
    def pending_bytes(self) -> int:
        return self._reassembler.stats.reserved_bytes

    def reset(self, options: DataOptions) -> None:
        """Forget every incomplete message (frees its buffers) and apply `options`."""
        self._pending_topics.clear()
        self._late_senders.clear()
        self._reassembler = self._new_reassembler(options)

    def on_packet(self, event: DataReceived) -> None:
        participant = event.participant
        sender = event.sender_identity
        payload = event.payload
        key = sender
        if (
            sender is not None
            and payload[:4] == MAGIC
            and (None, payload[6:14]) in self._pending_topics
        ):
            # The first chunks of this message came without the sender's identity (the
            # SDK learns of a participant that publishes nothing up to ~3 s after it
            # joined): keep its chunks together under that first key.
            self._late_senders[payload[6:14]] = sender
            key = None
        result = self._reassembler.feed(key, payload)
        if isinstance(result, Raw):
            self._deliver(
                DataMessage(
                    payload=result.payload,
                    topic=event.topic,
                    sender=sender,
                    participant=participant,
                    reliability=event.reliability,
                    kind=DataKind.PACKET,
                    received_at=event.received_at,
                )
            )
        elif isinstance(result, Stored):
            self._pending_topics.setdefault((result.sender, result.message_id), event.topic)
        elif isinstance(result, Complete):
            topic = self._pending_topics.pop((result.sender, result.message_id), event.topic)
            if result.sender is None:
                sender = self._late_senders.pop(result.message_id, None)
            self.chunked_received += 1
            self._deliver(
                DataMessage(
                    payload=result.payload,
                    topic=topic,
                    sender=sender,
                    participant=participant,
                    reliability=event.reliability,
                    kind=DataKind.CHUNKED,
                    received_at=event.received_at,
                )
            )
        else:
            self._report_codec_drop(result, event.topic)
        # Timeouts that this packet's arrival noticed.
        self.expire()

    def expire(self) -> None:
        """Report the incomplete messages that timed out by now."""
        for drop in self._reassembler.expire():
            self._report_codec_drop(drop, None)

    def _report_codec_drop(self, drop: Dropped, topic: str | None) -> None:
        sender = drop.sender
        if drop.message_id is not None:
            key = (drop.sender, drop.message_id)
            if drop.reason is DropReason.DUPLICATE:  # one packet; its message goes on
                topic = self._pending_topics.get(key, topic)
                if sender is None:
                    sender = self._late_senders.get(drop.message_id)
            else:
                topic = self._pending_topics.pop(key, topic)
                if sender is None:
                    sender = self._late_senders.pop(drop.message_id, None)
        self._report(
            DataDropped(
                reason=drop_reason_from_codec(drop.reason),
                sender=sender,
                topic=topic,
                message_id=drop.message_id,
                bytes_dropped=drop.bytes_dropped,
                at=time.time(),
            )
        )
