"""Data messages of any size: `session.data.send(...)` and `session.data.messages(...)`.

```python
await session.data.send("hello", topic="chat")
await session.data.send(big_blob, topic="files", to=["bob"])  # a stream if > 15 KiB

async with session.data.messages("chat") as messages:
    async for message in messages:
        print(message.sender, message.text)
```

One part per module: the channel that sends and routes messages to subscriptions
(`_channel`), received packets to whole messages through the one chunk codec
(`_packets`, over `lkkit._chunking`), native data streams (`_native_streams`), the
argument checks shared with the server API (`_args`), and the value types (`_types`).
See docs/data.md for sizes, reliability, topics, destinations and drop reports.
"""

from ._channel import DataChannel, DataSubscription
from ._stream_io import DataStreamWriter, IncomingStream
from ._types import (
    LOSSY_MTU_BYTES,
    MAX_TOPIC_BYTES,
    DataDropped,
    DataDropReason,
    DataKind,
    DataMessage,
    DataOptions,
    DataOrigin,
    DataSent,
    DataStats,
)

__all__ = [
    "LOSSY_MTU_BYTES",
    "MAX_TOPIC_BYTES",
    "DataChannel",
    "DataDropReason",
    "DataDropped",
    "DataKind",
    "DataMessage",
    "DataOptions",
    "DataOrigin",
    "DataSent",
    "DataStats",
    "DataStreamWriter",
    "DataSubscription",
    "IncomingStream",
]
