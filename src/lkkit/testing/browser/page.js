// lkkit's browser test peer: livekit-client (window.LivekitClient, the UMD bundle) in a
// page that Python drives over the DevTools protocol (lkkit.testing.BrowserPeer).
//
// Python -> page: Runtime.evaluate of `window.lkkit.<method>(...JSON arguments)`.
// Page -> Python: the `__lkkitEmit` binding (Runtime.addBinding), called with one JSON
// object per event: {"kind": ..., ...fields}. Binary payloads travel as base64.
"use strict";

(() => {
  const LK = window.LivekitClient;
  const RoomEvent = LK.RoomEvent;

  const emit = (kind, fields = {}) => {
    window.__lkkitEmit(JSON.stringify({ ...fields, kind }));
  };

  const toBase64 = (bytes) => {
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  };
  const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const sha256 = async (bytes) =>
    Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)), (b) =>
      b.toString(16).padStart(2, "0"),
    ).join("");
  const concat = (chunks) => {
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  };
  const publicationFields = (publication) => ({
    sid: publication.trackSid,
    name: publication.trackName,
    trackKind: publication.kind,
    source: publication.source,
    muted: publication.isMuted,
  });

  let room = null;
  let audioContext = null;
  const published = new Map(); // track name -> LocalTrackPublication
  const feeders = new Map(); // track name -> stop() for what feeds it (a canvas's timer)
  const listeners = new Map(); // remote identity -> {analyser, element}
  const videos = new Map(); // "identity/source" -> <video> playing a remote video track
  const videoKey = (identity, source) => `${identity}/${source}`;

  const context = async () => {
    if (audioContext === null) {
      audioContext = new AudioContext({ sampleRate: 48000 });
    }
    await audioContext.resume();
    return audioContext;
  };

  const connected = () => {
    if (room === null) throw new Error("not connected: call connect() first");
    return room;
  };

  const publishedAs = (name) => {
    const found = published.get(name);
    if (!found) throw new Error(`no track published as ${JSON.stringify(name)}`);
    return found;
  };

  // Remote audio goes to an AnalyserNode that Python reads (audioSnapshot). Chromium
  // renders a remote WebRTC track into Web Audio only while a media element plays it.
  const listen = async (identity, track) => {
    const element = track.attach();
    element.muted = true;
    const ctx = await context();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 32768;
    analyser.smoothingTimeConstant = 0;
    ctx.createMediaStreamSource(new MediaStream([track.mediaStreamTrack])).connect(analyser);
    listeners.set(identity, { analyser, element });
  };

  // Remote video plays (muted, autoplay) in a <video> element that Python reads
  // (videoInfo); one per participant and source.
  const watch = (identity, source, track) => {
    const element = track.attach();
    element.muted = true;
    document.body.append(element);
    videos.set(videoKey(identity, source), element);
  };

  const hook = (r) => {
    r.on(RoomEvent.ParticipantConnected, (p) =>
      emit("participantConnected", { identity: p.identity }),
    )
      .on(RoomEvent.ParticipantDisconnected, (p) =>
        emit("participantDisconnected", { identity: p.identity }),
      )
      .on(RoomEvent.DataReceived, (payload, p, kind, topic) =>
        emit("data", {
          identity: p ? p.identity : null,
          topic: topic ?? "",
          reliable: kind !== LK.DataPacket_Kind.LOSSY,
          size: payload.length,
          payload: toBase64(payload),
        }),
      )
      .on(RoomEvent.TrackPublished, (publication, p) =>
        emit("trackPublished", { identity: p.identity, ...publicationFields(publication) }),
      )
      .on(RoomEvent.TrackSubscribed, async (track, publication, p) => {
        if (track.kind === "audio") await listen(p.identity, track);
        if (track.kind === "video") watch(p.identity, publication.source, track);
        emit("trackSubscribed", { identity: p.identity, ...publicationFields(publication) });
      })
      .on(RoomEvent.TrackUnsubscribed, (track, publication, p) => {
        const listener = track.kind === "audio" ? listeners.get(p.identity) : undefined;
        if (listener) {
          track.detach(listener.element);
          listeners.delete(p.identity);
        }
        const key = videoKey(p.identity, publication.source);
        const video = track.kind === "video" ? videos.get(key) : undefined;
        if (video) {
          track.detach(video);
          video.remove();
          videos.delete(key);
        }
        emit("trackUnsubscribed", { identity: p.identity, ...publicationFields(publication) });
      })
      .on(RoomEvent.TrackMuted, (publication, p) =>
        emit("trackMuted", { identity: p.identity, ...publicationFields(publication) }),
      )
      .on(RoomEvent.TrackUnmuted, (publication, p) =>
        emit("trackUnmuted", { identity: p.identity, ...publicationFields(publication) }),
      )
      .on(RoomEvent.ParticipantMetadataChanged, (old, p) =>
        emit("participantMetadataChanged", {
          identity: p.identity,
          metadata: p.metadata ?? "",
          oldMetadata: old ?? "",
        }),
      )
      .on(RoomEvent.Reconnecting, () => emit("reconnecting"))
      .on(RoomEvent.Reconnected, () => emit("reconnected"))
      .on(RoomEvent.Disconnected, (reason) => emit("disconnected", { reason: reason ?? null }));
  };

  const streamFields = (reader, identity) => ({
    identity,
    id: reader.info.id,
    topic: reader.info.topic,
    mimeType: reader.info.mimeType,
    declaredSize: reader.info.size ?? null,
    attributes: reader.info.attributes ?? {},
  });

  window.lkkit = {
    get room() {
      return room;
    },

    async connect(url, token) {
      if (room !== null) throw new Error("already connected");
      room = new LK.Room();
      hook(room);
      await room.connect(url, token);
      return {
        identity: room.localParticipant.identity,
        sid: room.localParticipant.sid,
        remote: Array.from(room.remoteParticipants.keys()),
      };
    },

    async disconnect() {
      if (room !== null) await room.disconnect();
    },

    remoteIdentities() {
      return Array.from(connected().remoteParticipants.keys());
    },

    async publishData(base64, options = {}) {
      await connected().localParticipant.publishData(fromBase64(base64), options);
    },

    async sendBytes(base64, options = {}) {
      const info = await connected().localParticipant.sendBytes(fromBase64(base64), options);
      return { id: info.id, size: info.size ?? null, topic: info.topic };
    },

    async sendText(text, options = {}) {
      const info = await connected().localParticipant.sendText(text, options);
      return { id: info.id, size: info.size ?? null, topic: info.topic };
    },

    // Whole streams on `topic` are read to their end and reported with their SHA-256;
    // the payload itself too when it is at most `inlineMax` bytes.
    registerByteStream(topic, inlineMax = 65536) {
      connected().registerByteStreamHandler(topic, async (reader, participant) => {
        const started = performance.now();
        const bytes = concat(await reader.readAll());
        emit("byteStream", {
          ...streamFields(reader, participant.identity),
          name: reader.info.name,
          size: bytes.length,
          sha256: await sha256(bytes),
          payload: bytes.length <= inlineMax ? toBase64(bytes) : null,
          readMs: performance.now() - started,
        });
      });
    },

    registerTextStream(topic, inlineMax = 65536) {
      connected().registerTextStreamHandler(topic, async (reader, participant) => {
        const text = await reader.readAll();
        const bytes = new TextEncoder().encode(text);
        emit("textStream", {
          ...streamFields(reader, participant.identity),
          size: bytes.length,
          sha256: await sha256(bytes),
          text: bytes.length <= inlineMax ? text : null,
        });
      });
    },

    // Each chunk of the text streams on `topic` as it arrives ("textChunk"), then
    // "textStreamEnd" (or "textStreamError").
    registerTextChunks(topic) {
      connected().registerTextStreamHandler(topic, async (reader, participant) => {
        const fields = streamFields(reader, participant.identity);
        try {
          for await (const chunk of reader) emit("textChunk", { ...fields, chunk });
          emit("textStreamEnd", { ...fields, attributes: reader.info.attributes ?? {} });
        } catch (error) {
          emit("textStreamError", { ...fields, error: String(error) });
        }
      });
    },

    // A text stream written token by token, `delayMs` apart.
    async streamText(topic, tokens, delayMs = 0) {
      const writer = await connected().localParticipant.streamText({ topic });
      for (const token of tokens) {
        await writer.write(token);
        if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
      await writer.close();
      return { id: writer.info.id };
    },

    // A Web Audio oscillator published as a microphone track named `name`.
    async publishTone(name, frequency, gain = 0.5) {
      const ctx = await context();
      const oscillator = ctx.createOscillator();
      oscillator.frequency.value = frequency;
      const level = ctx.createGain();
      level.gain.value = gain;
      const destination = ctx.createMediaStreamDestination();
      oscillator.connect(level).connect(destination);
      oscillator.start();
      const publication = await connected().localParticipant.publishTrack(
        destination.stream.getAudioTracks()[0],
        { name, source: LK.Track.Source.Microphone },
      );
      published.set(name, publication);
      return publicationFields(publication);
    },

    // A canvas of one colour published as a video track named `name` (`source`
    // "camera" or "screen_share"): repainted `fps` times a second, so that
    // captureStream(fps) keeps sending frames while the picture stays the same.
    async publishCanvas(name, width, height, rgb, fps = 15, source = "camera", simulcast = true) {
      const canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = height;
      const ctx = canvas.getContext("2d");
      const paint = () => {
        ctx.fillStyle = `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
        ctx.fillRect(0, 0, width, height);
      };
      paint();
      const timer = setInterval(paint, 1000 / fps);
      const track = canvas.captureStream(fps).getVideoTracks()[0];
      const stop = () => {
        clearInterval(timer);
        track.stop();
      };
      let publication;
      try {
        publication = await connected().localParticipant.publishTrack(track, {
          name,
          source,
          simulcast,
        });
      } catch (error) {
        stop();
        throw error;
      }
      published.set(name, publication);
      feeders.set(name, stop);
      return publicationFields(publication);
    },

    async mute(name) {
      await publishedAs(name).mute();
    },

    async unmute(name) {
      await publishedAs(name).unmute();
    },

    async unpublish(name) {
      await connected().localParticipant.unpublishTrack(publishedAs(name).track);
      published.delete(name);
      feeders.get(name)?.();
      feeders.delete(name);
    },

    async setMetadata(metadata) {
      await connected().localParticipant.setMetadata(metadata);
    },

    // The latest 32,768 samples (float32, base64) of `identity`'s subscribed audio.
    audioSnapshot(identity) {
      const listener = listeners.get(identity);
      if (!listener) throw new Error(`no audio received from ${identity}`);
      const samples = new Float32Array(listener.analyser.fftSize);
      listener.analyser.getFloatTimeDomainData(samples);
      return {
        sampleRate: listener.analyser.context.sampleRate,
        samples: toBase64(new Uint8Array(samples.buffer)),
      };
    },

    // What the <video> element playing `identity`'s video track of `source` shows: its
    // size, the frames it has shown, and the mean RGB of the current frame drawn
    // through a canvas. null until that track is subscribed and plays.
    videoInfo(identity, source = "camera") {
      connected();
      const element = videos.get(videoKey(identity, source));
      if (
        !element ||
        element.paused ||
        element.readyState < HTMLMediaElement.HAVE_CURRENT_DATA ||
        element.videoWidth === 0
      ) {
        return null;
      }
      const width = element.videoWidth;
      const height = element.videoHeight;
      const canvas = new OffscreenCanvas(width, height);
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(element, 0, 0, width, height);
      const pixels = ctx.getImageData(0, 0, width, height).data;
      const sums = [0, 0, 0];
      for (let i = 0; i < pixels.length; i += 4) {
        sums[0] += pixels[i];
        sums[1] += pixels[i + 1];
        sums[2] += pixels[i + 2];
      }
      return {
        width,
        height,
        meanRgb: sums.map((sum) => sum / (width * height)),
        frames: element.getVideoPlaybackQuality().totalVideoFrames,
      };
    },
  };

  emit("ready", { livekitClient: LK.version });
})();
