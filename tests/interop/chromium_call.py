"""A Calls meeting through rtcd with headless Chromium peers (libwebrtc: the stack of the webapp).

Plays the Calls plugin on the rtcd WebSocket (join, SDP/ICE relay, mute/unmute, screen_on/off,
leave) and drives one Chromium page (calls_client.html) holding the end clients over the
DevTools protocol:
  A  unmuted, speaking (fake microphone)
  B  shares a canvas "screen" as VP8 simulcast with encodings l and h
  C  only listens
  V0..V9  ten further viewers of the screen (PLI storm)
Checks: C's getStats() shows inbound audio from A and decoded video from B; A's shows rtcd's
receiver reports on its voice, with a round trip; MediaMaps arrive
before media; the sharer gets at most one PLI per second although eleven viewers ask; VAD emits
voice on/off; mute stops A's audio at C; screen_off removes the screen track at C; leave and peer
failure both end with `close`; the sessions gauge returns to 0. Prints a JSON summary and exits
non-zero on failure.

Usage: chromium_call.py http://IP:PORT OUT_DIR   (run inside the test's network namespace)
"""
import asyncio
import itertools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request

import msgpack
from websockets.asyncio.client import connect

from calls_plugin import frame, register, rtc

CLIENT = "chromium-plugin"
VIEWERS = [f"V{i}" for i in range(10)]
PEERS = ["A", "B", "C"] + VIEWERS
# The sharer and one viewer support AV1: that viewer gets the AV1 variant, everyone else VP8.
AV1_PEERS = {"B", "V0"}
PAGE = pathlib.Path(__file__).with_name("calls_client.html").resolve()


async def until(cond, timeout, what):
    """Polls `cond` (sync or async) until true; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


class Chromium:
    """One headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, out_dir):
        self.profile = pathlib.Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=out_dir))
        self.log = open(pathlib.Path(out_dir) / "chromium.log", "wb")
        self.ids = itertools.count(1)
        self.pending = {}

    async def start(self):
        flags = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            # Two simulcast layers from a canvas regardless of libwebrtc's resolution table.
            "--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/",
            "--remote-debugging-port=0", f"--user-data-dir={self.profile}", PAGE.as_uri(),
        ]
        port_file = self.profile / "DevToolsActivePort"
        self.proc = subprocess.Popen(["chromium"] + flags, stdout=self.log, stderr=self.log)
        await until(lambda: port_file.exists() and port_file.read_text().strip(), 30, "DevToolsActivePort")
        port = int(port_file.read_text().split()[0])

        def page_ws():
            try:
                targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read())
            except OSError:
                return None
            pages = [t for t in targets if t.get("type") == "page" and t.get("url", "").startswith("file:")]
            return pages[0]["webSocketDebuggerUrl"] if pages else None

        url = await until(page_ws, 30, "the test page target")
        self.ws = await connect(url, max_size=64 << 20)
        self.reader = asyncio.ensure_future(self._read())
        await until(lambda: self.eval("typeof newPeer === 'function'"), 30, "the test page to load")

    async def _read(self):
        async for raw in self.ws:
            m = json.loads(raw)
            fut = self.pending.pop(m.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(m)

    async def eval(self, expr):
        i = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        await self.ws.send(json.dumps({"id": i, "method": "Runtime.evaluate",
                                       "params": {"expression": expr, "awaitPromise": True, "returnByValue": True}}))
        m = await asyncio.wait_for(fut, 30)
        if "error" in m:
            raise RuntimeError(f"{expr}: {m['error']}")
        r = m["result"]
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError(f"{expr}: {d.get('exception', {}).get('description') or d.get('text')}")
        return r["result"].get("value")

    async def call(self, fn, *args):
        return await self.eval(f"{fn}({', '.join(json.dumps(a) for a in args)})")

    def stop(self):
        if not hasattr(self, "proc"):
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def main(base, out_dir):
    basic = register(base, CLIENT)
    chrome = Chromium(out_dir)
    result = {"server_offers": 0, "vad": [], "closed": []}
    answered = {p: 0 for p in PEERS}
    try:
        await chrome.start()
        async with connect(base.replace("http://", "ws://") + "/ws", additional_headers={"Authorization": basic}) as ws:
            u = msgpack.Unpacker(raw=False)
            u.feed(await ws.recv())
            assert list(u)[0] == "hello"

            async def relay():
                """The plugin's relay: rtcd → end clients."""
                async for raw in ws:
                    u = msgpack.Unpacker(raw=False)
                    u.feed(raw)
                    t, data = list(u)
                    if t == "close":
                        result["closed"].append(data["sessionID"])
                        continue
                    if t == "vad":
                        result["vad"].append([data["session_id"], data["type"], time.monotonic()])
                        continue
                    if t != "rtc":
                        continue
                    sid = data["session_id"]
                    body = json.loads(data["data"])
                    if data["type"] == 2 and body["type"] == "answer":
                        await chrome.call("setAnswer", sid, json.dumps(body))
                        answered[sid] += 1
                    elif data["type"] == 2 and body["type"] == "offer":
                        result["server_offers"] += 1
                        ans = await chrome.call("handleOffer", sid, json.dumps(body))
                        await ws.send(rtc(sid, 2, ans.encode()))
                    elif data["type"] == 1:
                        await chrome.call("addIce", sid, json.dumps(body["candidate"]))
                        result.setdefault("candidates", set()).add(body["candidate"]["candidate"])

            async def pump():
                try:
                    await relay()
                except Exception as e:  # surface relay failures instead of losing them in the task
                    print("relay failed:", repr(e), file=sys.stderr)
                    raise

            pumper = asyncio.ensure_future(pump())

            async def offer(sid, sdp_json):
                """A client-initiated offer over the plugin; waits for rtcd's answer."""
                n = answered[sid]
                await ws.send(rtc(sid, 2, sdp_json.encode()))
                await until(lambda: answered[sid] > n or pumper.done(), 15, f"answer for {sid}")
                if pumper.done():
                    pumper.result()

            async def stats(sid):
                return await chrome.call("stats", sid)

            for sid in PEERS:
                await ws.send(frame("join", {"callID": "call", "userID": "u" + sid, "sessionID": sid,
                                             "channelID": "ch", "av1Support": sid in AV1_PEERS,
                                             "dcSignaling": False}))
                await offer(sid, await chrome.call("newPeer", sid))
            for sid in PEERS:
                await until(lambda: chrome.call("state", sid), 20, "peer state")
                await until(lambda sid=sid: _dc_open(chrome, sid), 20, f"{sid}'s data channel")
            await chrome.call("ping", "A")
            await until(lambda: _field(chrome, "A", "pongs"), 5, "a Pong on A's data channel")
            result["dc_pong"] = True

            # A unmutes: its microphone joins (client offer), then the plugin relays `unmute`.
            await offer("A", await chrome.call("addMic", "A"))
            await ws.send(rtc("A", 4))
            # B shares its screen: `screen_on` names the stream first, as the webapp does.
            screen = await chrome.call("addScreen", "B", True)
            await ws.send(rtc("B", 5, json.dumps({"screenStreamID": screen["streamID"]}).encode()))
            await offer("B", screen["offer"])
            share_started = time.monotonic()

            def inbound(st, kind):
                return [s for s in st["inbound"] if s["kind"] == kind]

            first_width = []

            async def c_hears_and_sees():
                st = await stats("C")
                audio, video = inbound(st, "audio"), inbound(st, "video")
                widths = [s["width"] for s in video if s["width"]]
                if widths and not first_width:
                    first_width.append(widths[0])  # the layer C started on
                return (audio and max(s["packets"] for s in audio) >= 100 and video
                        and max(s["framesDecoded"] for s in video) >= 10)

            await until(c_hears_and_sees, 40, "C receiving A's audio and decoding B's screen")
            st_c = await stats("C")
            result["c_audio_packets"] = max(s["packets"] for s in inbound(st_c, "audio"))
            result["c_video_frames"] = max(s["framesDecoded"] for s in inbound(st_c, "video"))
            result["c_video_width"] = first_width[0] if first_width else 0
            # A's voice is opened on rtcd's fast path, which writes the receiver reports A's
            # browser gets on it: libsrtp must open them, and their LSR/DLSR give a round trip.
            async def a_reported():
                return [s for s in (await stats("A"))["remote"] if s["kind"] == "audio" and s["rttCount"] >= 2]

            await until(a_reported, 40, "receiver reports with a round trip on A's voice")
            result["a_voice_reports"] = (await a_reported())[0]
            # Every viewer decodes the screen too.
            for v in VIEWERS:
                await until(lambda v=v: _decoded(chrome, v), 30, f"{v} decoding the screen")
            # PLIs: the viewers ask for a keyframe when the screen arrives (one whose first frame
            # is a keyframe needs none); the sharer must see at most one per second of sharing
            # (plus the burst of one).
            st_b = await stats("B")
            elapsed = time.monotonic() - share_started
            # The ten VP8 viewers share the `l` layer: one rate-limited PLI stream (V0's AV1 has its own).
            result["sharer_plis"] = sum(s["pliReceived"] for s in st_b["outbound"] if s["codec"] == "video/VP8")
            result["sharer_layers"] = sorted(s["rid"] for s in st_b["outbound"] if s["kind"] == "video")
            result["viewer_plis"] = 0
            for v in VIEWERS + ["C"]:
                result["viewer_plis"] += sum(s["pliSent"] for s in inbound(await stats(v), "video"))
            result["share_seconds"] = elapsed
            result["viewer_codecs"] = {}
            for v in VIEWERS + ["C"]:
                st = await stats(v)
                result["viewer_codecs"][v] = sorted({s["codec"] for s in inbound(st, "video") if s["framesDecoded"]})
            result["sharer_codecs"] = sorted({s["codec"] for s in st_b["outbound"] if s["kind"] == "video"})

            # Bandwidth estimation: on this unconstrained link C's estimate grows past what `h`
            # carries, and rtcd moves C to the full-resolution layer (remove + add).
            async def c_width():
                return max((s["width"] for s in inbound(await stats("C"), "video") if s["framesDecoded"]), default=0)

            t = time.monotonic()
            try:
                await until(lambda: _eq(c_width(), 1280), 40, "C switched to the h layer")
                result["c_switch_to_h_seconds"] = time.monotonic() - t
            except TimeoutError:
                result["c_switch_to_h_seconds"] = None
            result["c_width_after_bwe"] = await c_width()
            st_b2 = await stats("B")
            result["sharer_outbound"] = [{k: s[k] for k in ("rid", "codec", "packets", "limit", "active", "width")}
                                         for s in st_b2["outbound"] if s["kind"] == "video"]
            result["sharer_outgoing_bitrate"] = st_b2.get("outgoingBitrate")

            c_state = await chrome.call("state", "C")
            maps = [m[1] for m in c_state["dcMsgs"] if m and m[0] == 9]
            result["c_media_map_types"] = sorted({e["type"] for m in maps for e in m.values()})

            # VAD: A's fake microphone beeps, so voice turns on; mute resets VAD (voice off).
            await until(lambda: any(s == "A" and t == 7 for s, t, _ in result["vad"]), 20, "VAD voice on for A")
            await ws.send(rtc("A", 3))
            muted_at = time.monotonic()
            await until(lambda: any(s == "A" and t == 8 and at >= muted_at for s, t, at in result["vad"]), 10,
                        "VAD voice off for A after mute")
            # Mute gating: after in-flight packets drain, C receives nothing more from A.
            await asyncio.sleep(0.5)
            before = max(s["packets"] for s in inbound(await stats("C"), "audio"))
            await asyncio.sleep(2.0)
            after = max(s["packets"] for s in inbound(await stats("C"), "audio"))
            result["c_audio_packets_while_muted"] = after - before
            a_sent = await stats("A")
            result["a_still_sending"] = sum(s["packets"] for s in a_sent["outbound"] if s["kind"] == "audio")

            # screen_off: the sharer stops; rtcd renegotiates the screen away at every viewer.
            offers_before = result["server_offers"]
            await ws.send(rtc("B", 6))
            await offer("B", await chrome.call("removeScreen", "B"))
            await until(lambda: chrome.eval("peers.C.pc.getTransceivers().every(t => t.receiver.track.kind !== 'video'"
                                            " || t.currentDirection === 'inactive' || t.currentDirection === 'stopped'"
                                            " || t.currentDirection === null)"),
                        15, "the screen track removed at C")
            result["screen_off_offers"] = result["server_offers"] - offers_before

            # C leaves through the plugin; A's peer dies; then everyone else leaves.
            await ws.send(frame("leave", {"sessionID": "C"}))
            await chrome.call("closePeer", "A")
            await until(lambda: {"A", "C"} <= set(result["closed"]), 40, "close for A and C")
            for sid in ["B"] + VIEWERS:
                await ws.send(frame("leave", {"sessionID": sid}))
            await until(lambda: set(PEERS) <= set(result["closed"]), 20, "close for everyone")
            metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
            gauge = [l for l in metrics.splitlines() if l.startswith(f'rtcd_rtc_sessions_total{{groupID="{CLIENT}"}}')]
            result["sessions_gauge"] = float(gauge[0].split()[-1]) if gauge else None
            for name in ["signaling_lock_grab_time", "signaling_lock_locked_time", "connection_time", "dc_open_time"]:
                result[name + "_count"] = sum(float(l.split()[-1]) for l in metrics.splitlines()
                                              if l.startswith(f"rtcd_rtc_{name}_count"))
            result["switches_to_h"] = sum(float(l.split()[-1]) for l in metrics.splitlines()
                                          if l.startswith('rtcd_rtc_simulcast_switches_total{layer="h"}'))
            pumper.cancel()
    finally:
        chrome.stop()
    result["candidates"] = sorted(result.get("candidates", []))
    result["vad"] = [[s, t] for s, t, _ in result["vad"]]
    print(json.dumps(result))


async def _eq(aw, v):
    return (await aw) == v


async def _dc_open(chrome, sid):
    return (await chrome.call("state", sid))["dc"]


async def _field(chrome, sid, f):
    return (await chrome.call("state", sid))[f]


async def _decoded(chrome, sid):
    st = await chrome.call("stats", sid)
    return any(s["kind"] == "video" and s["framesDecoded"] > 0 for s in st["inbound"])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.getcwd()))
