"""A two-person call through rtcd with aiortc peers (a WebRTC stack this project did not write).

Plays the Calls plugin on the rtcd WebSocket (join, SDP/ICE relay, unmute) and two end clients:
A publishes a microphone track, B only listens. Checks: the DC-only first offer is answered, the
data channel opens and answers Ping with Pong, B gets a MediaMap naming A's track as voice before
the server's offer, and B receives A's audio. Prints a JSON summary; exits non-zero on failure.

Usage: aiortc_call.py http://127.0.0.1:PORT   (run inside the test's network namespace)
"""
import asyncio
import fractions
import json
import socket
import sys
import urllib.request
import zlib

import msgpack
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from av import AudioFrame
from websockets.asyncio.client import connect

from calls_plugin import frame, register, rtc

CLIENT = "aiortc-plugin"


class Tone(AudioStreamTrack):
    """20 ms frames of a non-silent signal, so the encoder emits real packets."""

    def __init__(self):
        super().__init__()
        self.n = 0

    async def recv(self):
        await asyncio.sleep(0.02)
        frame = AudioFrame(format="s16", layout="mono", samples=960)
        pcm = bytes((i * 37 + self.n) % 256 for i in range(960 * 2))
        frame.planes[0].update(pcm)
        frame.sample_rate = 48000
        frame.pts = self.n * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self.n += 1
        return frame


class Client:
    def __init__(self, sid):
        self.sid = sid
        self.pc = RTCPeerConnection()
        self.dc = self.pc.createDataChannel("calls-dc")
        self.dc_open = asyncio.Event()
        self.dc_msgs = []
        self.got_pong = asyncio.Event()
        self.tracks = []
        self.audio_frames = 0
        self.answered = asyncio.Event()
        self.dc.on("open", self.dc_open.set)

        @self.dc.on("message")
        def on_message(m):
            if isinstance(m, bytes):
                u = msgpack.Unpacker(raw=False)
                u.feed(m)
                vals = list(u)
                self.dc_msgs.append(vals)
                if vals and vals[0] == 2:
                    self.got_pong.set()

        @self.pc.on("track")
        def on_track(track):
            self.tracks.append(track)
            asyncio.ensure_future(self.consume(track))

    async def consume(self, track):
        while True:
            try:
                await track.recv()
            except Exception:
                return
            self.audio_frames += 1


async def main(base):
    basic = register(base, CLIENT)
    clients = {"A": Client("A"), "B": Client("B")}
    closed = set()
    result = {}
    async with connect(base.replace("http://", "ws://") + "/ws", additional_headers={"Authorization": basic}) as ws:
        u = msgpack.Unpacker(raw=False)
        u.feed(await ws.recv())
        assert list(u)[0] == "hello"

        async def pump():
            """The plugin's relay: rtcd → end clients."""
            try:
                await relay()
            except Exception as e:  # surface relay failures instead of losing them in the task
                print("relay failed:", repr(e), file=sys.stderr)
                raise

        async def relay():
            async for raw in ws:
                u = msgpack.Unpacker(raw=False)
                u.feed(raw)
                t, data = list(u)
                if t == "close":
                    closed.add(data["sessionID"])
                    continue
                if t != "rtc":
                    continue
                c = clients[data["session_id"]]
                body = json.loads(data["data"])
                if data["type"] == 2 and body["type"] == "answer":
                    await c.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
                    c.answered.set()
                elif data["type"] == 2 and body["type"] == "offer":
                    result.setdefault("server_offers", 0)
                    result["server_offers"] += 1
                    await c.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "offer"))
                    await c.pc.setLocalDescription(await c.pc.createAnswer())
                    ans = json.dumps({"type": "answer", "sdp": c.pc.localDescription.sdp}).encode()
                    await ws.send(rtc(c.sid, 2, ans))
                elif data["type"] == 1:
                    result.setdefault("candidates", []).append(body["candidate"]["candidate"])

        pumper = asyncio.ensure_future(pump())
        for sid, c in clients.items():
            await ws.send(frame("join", {"callID": "call", "userID": "u" + sid, "sessionID": sid,
                                         "channelID": "ch", "av1Support": False, "dcSignaling": False}))
            await c.pc.setLocalDescription(await c.pc.createOffer())
            offer = json.dumps({"type": "offer", "sdp": c.pc.localDescription.sdp}).encode()
            await ws.send(rtc(sid, 2, offer))
        for c in clients.values():
            await asyncio.wait_for(c.answered.wait(), 10)
            await asyncio.wait_for(c.dc_open.wait(), 10)
            c.dc.send(b"\x01")  # Ping as the JS client encodes it (positive fixint)
            await asyncio.wait_for(c.got_pong.wait(), 5)
        result["dc_pong"] = True

        # A unmutes: adds its microphone (client-initiated renegotiation) and tells the plugin.
        a = clients["A"]
        a.answered.clear()
        a.pc.addTrack(Tone())
        await a.pc.setLocalDescription(await a.pc.createOffer())
        await ws.send(rtc("A", 2, json.dumps({"type": "offer", "sdp": a.pc.localDescription.sdp}).encode()))
        await asyncio.wait_for(a.answered.wait(), 10)
        await ws.send(rtc("A", 4))  # Unmute

        b = clients["B"]
        for _ in range(200):
            if b.audio_frames >= 50:
                break
            await asyncio.sleep(0.05)
        # Junk floods the media port at a bounded rate (4000 datagrams over 2 s) while A talks:
        # B's audio must keep flowing.
        udp = [c for c in result["candidates"] if c.split()[2] == "udp"][0].split()
        host, port = udp[4], int(udp[5])
        junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        before = b.audio_frames
        for i in range(40):
            for j in range(100):
                junk.sendto(bytes([(i * 7 + j) % 256]) * (20 + j * 11), (host, port))
            await asyncio.sleep(0.05)
        junk.close()
        result["audio_frames_during_flood"] = b.audio_frames - before

        maps = [m for m in b.dc_msgs if m and m[0] == 9]
        result["media_map"] = maps[0][1] if maps else None
        result["b_tracks"] = len(b.tracks)
        result["b_audio_frames"] = b.audio_frames
        # A leaves through the plugin; B's peer goes away on its own. Both end with `close`.
        await ws.send(frame("leave", {"sessionID": "A"}))
        await b.pc.close()
        for _ in range(200):
            if {"A", "B"} <= closed:
                break
            await asyncio.sleep(0.05)
        result["closed"] = sorted(closed)
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        gauge = [l for l in metrics.splitlines() if l.startswith('rtcd_rtc_sessions_total{groupID="aiortc-plugin"}')]
        result["sessions_gauge"] = float(gauge[0].split()[-1]) if gauge else None
        def series(prefix):
            return {l.split(" ")[0]: float(l.split(" ")[-1]) for l in metrics.splitlines() if l.startswith(prefix)}
        result["conn_states"] = series("rtcd_rtc_conn_states_total")
        result["tracks"] = series("rtcd_rtc_rtp_tracks_total")
        pumper.cancel()
        await a.pc.close()
    print(json.dumps(result))
    ok = (result.get("dc_pong") and result["b_audio_frames"] >= 50 and result["media_map"]
          and list(result["media_map"].values())[0]["type"] == "voice"
          and result["audio_frames_during_flood"] >= 60
          and result["closed"] == ["A", "B"] and result["sessions_gauge"] == 0)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
