"""LiveKit's JavaScript client (livekit-client in headless Chromium) as the peer of an
lkkit session, against the real server: packets both ways, native streams both ways,
the browser's metadata, mute and leave as typed events, and audio both ways at the
right pitch. Also the browser driver itself (`lkkit.testing.BrowserPeer`).

The `browser_peer` fixture is a fresh page of one Chromium shared by the session.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path
from typing import TypeVar

import anyio
import numpy as np
import numpy.typing as npt
import pytest

import lkkit
from browser_helpers import WAIT, b64, join, receive
from lkkit._audio._sources import sine_tone
from lkkit._data import DataKind
from lkkit._event_bus import EventSubscription
from lkkit._events import (
    Event,
    ParticipantDisconnected,
    ParticipantMetadataChanged,
    TrackMuted,
    TrackUnmuted,
)
from lkkit.testing import (
    BrowserNotFound,
    BrowserPeer,
    BrowserTimeout,
    Chromium,
    JavaScriptError,
    LiveKitRoom,
    find_browser,
)

pytestmark = pytest.mark.anyio

RATE = 48_000


# -- data ------------------------------------------------------------------------------


async def test_packets_both_ways_with_topic_and_sender(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    alice = await livekit_room.join("alice")
    await join(livekit_room, browser_peer, alice)

    async with alice.data.messages("chat") as chat:
        options = {"topic": "chat", "reliable": True}  # livekit-client's default is lossy
        await browser_peer.call("publishData", b64(b"hello from the browser"), options)
        message = await receive(chat)
    assert message.payload == b"hello from the browser"
    assert message.topic == "chat"
    assert message.sender == "web"
    assert message.kind is DataKind.PACKET
    assert message.reliability is lkkit.DataReliability.RELIABLE

    payload = os.urandom(1000)
    await alice.data.send(payload, topic="news")
    event = await browser_peer.wait_for("data", lambda e: e["topic"] == "news", timeout=WAIT)
    assert event.decode() == payload
    assert event["identity"] == "alice"
    assert event["reliable"] is True


async def test_browser_send_bytes_and_send_text_arrive_whole(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    alice = await livekit_room.join("alice")
    await join(livekit_room, browser_peer, alice)
    payload = os.urandom(200_000)
    text = "naïve café ✓ " * 4000  # 60,000 characters, 68,000 UTF-8 bytes

    async with alice.data.messages(["files", "notes"]) as messages:
        await browser_peer.call(
            "sendBytes", b64(payload), {"topic": "files", "name": "blob.bin"}, timeout=WAIT
        )
        await browser_peer.call("sendText", text, {"topic": "notes"}, timeout=WAIT)
        received = {m.topic: m for m in [await receive(messages), await receive(messages)]}

    blob, note = received["files"], received["notes"]
    assert blob.payload == payload
    assert blob.kind is DataKind.BYTE_STREAM
    assert blob.sender == "web"
    assert note.text == text
    assert note.kind is DataKind.TEXT_STREAM
    assert note.sender == "web"


async def test_native_stream_of_1_mib_reaches_the_browser_byte_stream_handler(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    alice = await livekit_room.join("alice")
    await join(livekit_room, browser_peer, alice)
    await browser_peer.call("registerByteStream", "big")
    payload = os.urandom(1024 * 1024)

    await alice.data.send(payload, topic="big", native_stream=True)
    event = await browser_peer.wait_for("byteStream", timeout=WAIT)

    assert event["topic"] == "big"
    assert event["identity"] == "alice"
    assert event["size"] == len(payload)
    assert event["sha256"] == hashlib.sha256(payload).hexdigest()


# -- events ------------------------------------------------------------------------------

E = TypeVar("E")


async def next_event(events: EventSubscription[Event], kind: type[E]) -> E:
    event = await anext(events)
    assert isinstance(event, kind), event
    return event


async def test_browser_metadata_mute_and_leave_arrive_as_typed_events(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    alice = await livekit_room.join("alice")
    await browser_peer.connect(
        livekit_room.url, livekit_room.token("web", can_update_own_metadata=True)
    )
    track = await browser_peer.call("publishTone", "tone", 660)
    publication = await alice.wait_for_track("web", source=lkkit.TrackSource.MICROPHONE)
    assert publication.sid == track["sid"]
    kinds = (ParticipantMetadataChanged, TrackMuted, TrackUnmuted, ParticipantDisconnected)

    async with alice.events(*kinds) as events:
        with anyio.fail_after(WAIT):
            sent = time.monotonic()
            await browser_peer.call("setMetadata", '{"mood": "curious"}')
            metadata = await next_event(events, ParticipantMetadataChanged)
            metadata_s = time.monotonic() - sent
            await browser_peer.call("mute", "tone")
            muted = await next_event(events, TrackMuted)
            assert muted.publication.muted  # a live view: read it now
            await browser_peer.call("unmute", "tone")
            unmuted = await next_event(events, TrackUnmuted)
            assert not unmuted.publication.muted
            await browser_peer.disconnect()
            left = await next_event(events, ParticipantDisconnected)

    assert metadata.participant.identity == "web"
    assert (metadata.old_metadata, metadata.metadata) == ("", '{"mood": "curious"}')
    assert muted.participant.identity == "web"
    assert muted.publication.sid == track["sid"]
    assert unmuted.publication.sid == track["sid"]
    assert left.participant.identity == "web"
    assert left.reason is lkkit.DisconnectReason.CLIENT_INITIATED
    assert "web" not in alice.remote_participants
    print(f"metadata change reached lkkit {metadata_s * 1000:.1f} ms after setMetadata returned")


# -- audio -------------------------------------------------------------------------------


def peak_hz(samples: npt.NDArray[np.float64], rate: int = RATE) -> float:
    x = samples * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x, n=8 * len(x)))
    return float(np.argmax(spectrum) * rate / (8 * len(x)))


def rms(samples: npt.NDArray[np.float64]) -> float:
    return float(np.sqrt(np.mean(samples**2)))


async def test_lkkit_audio_reaches_the_browser_at_440_hz(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    alice = await livekit_room.join("alice")
    await browser_peer.connect(livekit_room.url, livekit_room.token("web"))
    tone = sine_tone(440.0, 4.0, amplitude=0.5)
    async with anyio.create_task_group() as tg, alice.audio.publish("voice") as publisher:
        tg.start_soon(publisher.write, tone)
        await browser_peer.wait_for(
            "trackSubscribed", lambda e: e["identity"] == "alice", timeout=WAIT
        )
        with anyio.fail_after(WAIT):
            while True:  # the latest 0.68 s the browser received, until it is all tone
                await anyio.sleep(0.2)
                snapshot = await browser_peer.call("audioSnapshot", "alice")
                samples = np.frombuffer(
                    base64.b64decode(snapshot["samples"]), dtype=np.float32
                ).astype(np.float64)
                if rms(samples[: len(samples) // 4]) > 0.1:
                    break
        tg.cancel_scope.cancel()
    assert snapshot["sampleRate"] == RATE
    assert abs(peak_hz(samples) - 440.0) <= 5.0
    # A 0.5 amplitude sine has an RMS of 0.354 (Opus and the jitter buffer keep it).
    assert abs(rms(samples) - 0.5 / np.sqrt(2)) < 0.1


async def test_browser_oscillator_reaches_lkkit_at_660_hz(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    alice = await livekit_room.join("alice")
    await browser_peer.connect(livekit_room.url, livekit_room.token("web"))
    await browser_peer.call("publishTone", "tone", 660, 0.5)
    publication = await alice.wait_for_track("web", source=lkkit.TrackSource.MICROPHONE)
    chunks: list[npt.NDArray[np.int16]] = []
    with anyio.fail_after(WAIT):
        async with alice.audio.stream(publication) as stream:
            async for chunk in stream:
                level = np.sqrt(np.mean(chunk.samples.astype(np.float64) ** 2))
                if chunks or level > 1000:  # from the first sounding chunk on
                    chunks.append(chunk.samples)
                if len(chunks) == 100:  # one second
                    break
    audio = np.concatenate(chunks).astype(np.float64) / 32768
    assert abs(peak_hz(audio) - 660.0) <= 5.0
    assert abs(rms(audio) - 0.5 / np.sqrt(2)) < 0.1


# -- the driver --------------------------------------------------------------------------


async def test_evaluate_returns_json_values_and_raises_javascript_errors(
    browser_peer: BrowserPeer,
) -> None:
    assert await browser_peer.evaluate("({a: [1, 2.5, 'x', null, true]})") == {
        "a": [1, 2.5, "x", None, True]
    }
    assert await browser_peer.evaluate("Promise.resolve(42)") == 42
    assert await browser_peer.evaluate("undefined") is None
    assert await browser_peer.evaluate("LivekitClient.version") == "2.23.0"
    with pytest.raises(JavaScriptError, match=r"^Error: boom$") as raised:
        await browser_peer.evaluate("Promise.reject(new Error('boom'))")
    assert "boom" in raised.value.stack
    with pytest.raises(JavaScriptError, match="not connected: call connect"):
        await browser_peer.call("publishData", b64(b"x"))
    with pytest.raises(BrowserTimeout):
        await browser_peer.evaluate("new Promise(() => {})", timeout=0.2)
    with pytest.raises(BrowserTimeout, match="'never'"):
        await browser_peer.wait_for("never", timeout=0.1)
    assert [e.kind for e in browser_peer.events] == ["ready"]


async def test_connect_failure_is_a_javascript_error(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    bad_token = livekit_room.token("web") + "x"
    with pytest.raises(JavaScriptError):
        await browser_peer.connect(livekit_room.url, bad_token, timeout=WAIT)
    assert browser_peer.identity is None


def browser_processes(profile: Path) -> list[int]:
    """Live processes started for the browser with `profile` (the browser, its
    helpers, crashpad): their command lines name the profile folder."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if state != "Z" and str(profile).encode() in cmdline:
            found.append(int(entry.name))
    return found


async def test_chromium_stops_without_leaving_processes() -> None:
    with Chromium() as browser:
        profile = browser.user_data_dir
        assert profile is not None
        async with await browser.new_peer() as peer:
            assert await peer.evaluate("1 + 1") == 2
        assert len(browser_processes(profile)) >= 3  # browser, zygote, renderer...
    assert browser_processes(profile) == []
    assert not profile.exists()
    assert not browser.running


def test_missing_livekit_client_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.setenv("LKKIT_BROWSER_CACHE_DIR", str(tmp_path))
    with pytest.raises(BrowserNotFound, match=r"python -m lkkit\.testing install-browser"):
        find_browser()
    monkeypatch.setenv("LKKIT_CHROMIUM", str(tmp_path) + "/no-such-chromium")
    with pytest.raises(BrowserNotFound, match="LKKIT_CHROMIUM"):
        find_browser()


async def test_a_call_abandoned_in_flight_leaves_the_driver_working(
    browser_peer: BrowserPeer,
) -> None:
    """`video_info` polls the page under a deadline, which can cancel a call whose
    answer is on its way; the answer must not stop the DevTools reader thread."""
    with anyio.move_on_after(0.1):
        await browser_peer.evaluate("new Promise((resolve) => setTimeout(resolve, 300, 1))")
    await anyio.sleep(0.5)  # the answer arrived for a caller that had left
    with anyio.fail_after(WAIT):
        assert await browser_peer.evaluate("1 + 1", timeout=5) == 2
