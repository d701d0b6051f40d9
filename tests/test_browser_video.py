"""Video between an lkkit session and LiveKit's JavaScript client (livekit-client in
headless Chromium), against the real server: lkkit's numpy frames play in the browser's
`<video>` element at their size and colour, and a browser canvas reaches lkkit as numpy
frames at its size and in the colour Chromium itself shows, until the browser
unpublishes it."""

from __future__ import annotations

import anyio
import numpy as np
import numpy.typing as npt
import pytest

import lkkit
from browser_helpers import WAIT
from lkkit import TrackSource
from lkkit.testing import BrowserPeer, BrowserTimeout, BrowserVideoInfo, Chromium, LiveKitRoom

pytestmark = pytest.mark.anyio

W, H = 320, 240
ORANGE = (230, 120, 30)
SKY = (40, 160, 220)
SETTLED = 10  # frames: the encoder's first ones are blurry, and may be a lower layer
TOLERANCE = 12  # per channel: VP8, 4:2:0 chroma and two colour conversions
SAME_DECODE = 3  # per channel: two decoders of the same frames
# Chromium's canvas capture converts RGB to YUV as BT.709 full range, and receivers
# (Chromium's and lkkit's) convert back as BT.601 limited range, so a canvas's colour
# arrives shifted: SKY shows as (43, 178, 229), pure red as (247, 0, 0).
CANVAS_SHIFT = 24


def colour_error(mean: npt.ArrayLike, rgb: npt.ArrayLike) -> float:
    """The largest difference of one channel."""
    return float(np.abs(np.asarray(mean, np.float64) - np.asarray(rgb, np.float64)).max())


async def keep_writing(pub: lkkit.VideoPublisher, frame: npt.NDArray[np.uint8]) -> None:
    while True:
        await pub.write(frame)


async def settled_video(peer: BrowserPeer, identity: str) -> BrowserVideoInfo:
    """What `peer` shows of `identity`'s camera once it has shown `SETTLED` frames at
    `W` x `H`."""
    info = await peer.video_info(identity, timeout=WAIT)
    try:
        with anyio.fail_after(WAIT):
            while info.frames < SETTLED or (info.width, info.height) != (W, H):
                await anyio.sleep(0.1)
                info = await peer.video_info(identity)
    except TimeoutError:
        # Not pytest.fail: a BaseException leaving a task group stops anyio's runner.
        raise AssertionError(f"the browser's video did not settle at {W}x{H}: {info}") from None
    return info


async def test_lkkit_video_plays_in_the_browser_at_its_size_and_colour(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer
) -> None:
    alice = await livekit_room.join("alice")
    await browser_peer.connect(livekit_room.url, livekit_room.token("web"))
    with pytest.raises(BrowserTimeout, match="no camera video from 'alice'"):
        await browser_peer.video_info("alice", timeout=0.3)  # nothing published yet
    frame = np.tile(np.array([*ORANGE, 255], np.uint8), (H, W, 1))
    async with (
        alice.video.publish("cam", width=W, height=H, fps=15) as pub,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(keep_writing, pub, frame)
        info = await settled_video(browser_peer, "alice")
        subscribed = await browser_peer.wait_for(
            "trackSubscribed", lambda e: e["trackKind"] == "video", timeout=WAIT
        )
        assert subscribed["sid"] == pub.publication.sid
        tg.cancel_scope.cancel()
    assert subscribed["source"] == "camera"
    assert (info.width, info.height) == (W, H)
    assert colour_error(info.mean_rgb, ORANGE) < TOLERANCE, info
    print(f"the browser shows {info}; lkkit wrote {ORANGE}")


async def test_a_browser_canvas_reaches_lkkit_at_its_size_and_as_chromium_shows_it(
    livekit_room: LiveKitRoom, browser_peer: BrowserPeer, chromium: Chromium
) -> None:
    bob = await livekit_room.join("bob")
    await browser_peer.connect(livekit_room.url, livekit_room.token("web"))
    sid = await browser_peer.publish_canvas("canvas", width=W, height=H, rgb=SKY, fps=15)
    publication = await bob.wait_for_track("web", source=TrackSource.CAMERA)
    assert publication.sid == sid
    assert publication.name == "canvas"

    async with await chromium.new_peer() as viewer, bob.video.stream(publication) as frames:
        await viewer.connect(livekit_room.url, livekit_room.token("viewer"))
        shown = await settled_video(viewer, "web")
        with anyio.fail_after(WAIT):
            received = 0
            async for frame in frames:
                received += 1
                if received >= SETTLED and (frame.width, frame.height) == (W, H):
                    break
        assert frame.format is lkkit.VideoFormat.RGB
        assert frame.pixels.shape == (H, W, 3)
        mean = frame.pixels.reshape(-1, 3).mean(axis=0)

        await browser_peer.unpublish("canvas")
        with anyio.fail_after(WAIT):
            async for _ in frames:  # the stream ends with the track
                pass
    # lkkit and Chromium decode the same frames to the same colour...
    assert colour_error(mean, shown.mean_rgb) < SAME_DECODE, (mean, shown)
    # ...which is the canvas's, shifted by Chromium's capture (see CANVAS_SHIFT).
    assert colour_error(mean, SKY) < CANVAS_SHIFT, mean
    print(f"lkkit received {mean.round(1)}, Chromium shows {shown.mean_rgb}; canvas {SKY}")
