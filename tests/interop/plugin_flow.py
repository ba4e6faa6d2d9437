"""Drives rtcd as the Calls plugin does, with third-party libraries only (websockets, msgpack):
register -> connect with Basic auth -> hello -> join -> offer -> session query -> leave -> close.

Usage: plugin_flow.py http://127.0.0.1:PORT
Exits non-zero with a message on the first deviation.
"""
import asyncio
import base64
import json
import sys
import urllib.request

import msgpack
from websockets.asyncio.client import connect

KEY = "Ey4-H_BJA00_TVByPi8DozE12ekN3S7L"
CLIENT = "pyclient"


def http(method, url, body=None, auth=None):
    req = urllib.request.Request(url, method=method, data=body.encode() if body else None)
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def frame(msg_type, data):
    # Two concatenated msgpack values, as vmihailenco's EncodeMulti writes them.
    return msgpack.packb(msg_type, use_bin_type=True) + msgpack.packb(data, use_bin_type=True)


def unframe(buf):
    u = msgpack.Unpacker(raw=False)
    u.feed(buf)
    values = list(u)
    assert len(values) == 2, f"expected two concatenated values, got {values!r}"
    return values[0], values[1]


async def recv(ws):
    buf = await asyncio.wait_for(ws.recv(), timeout=10)
    assert isinstance(buf, bytes), f"expected a binary frame, got {buf!r}"
    return unframe(buf)


async def main(base):
    basic = "Basic " + base64.b64encode(f"{CLIENT}:{KEY}".encode()).decode()
    status, body = http("POST", base + "/register", json.dumps({"clientID": CLIENT, "authKey": KEY}))
    assert (status, json.loads(body)) == (201, {"clientID": CLIENT, "code": "201"}), (status, body)

    ws_url = base.replace("http://", "ws://") + "/ws"
    async with connect(ws_url, additional_headers={"Authorization": basic}) as ws:
        t, data = await recv(ws)
        assert t == "hello" and data["clientID"] == CLIENT and len(data["connID"]) == 26, (t, data)

        await ws.send(frame("join", {"callID": "pycall", "userID": "u1", "sessionID": "pysess",
                                     "channelID": "ch1", "av1Support": False, "dcSignaling": True}))
        offer = json.dumps({"type": "offer", "sdp": "v=0\r\n"}).encode()
        await ws.send(frame("rtc", {"group_id": "", "user_id": "", "session_id": "pysess", "call_id": "",
                                    "type": 2, "data": offer}))
        # The session is visible to the plugin's "is the call still on" query.
        for _ in range(50):
            status, body = http("GET", base + "/calls/pycall/sessions", auth=basic)
            if status == 200:
                break
            await asyncio.sleep(0.05)
        sessions = json.loads(body)
        assert status == 200 and sessions[0]["SessionID"] == "pysess", (status, body)
        assert sessions[0]["Props"] == {"av1Support": False, "channelID": "ch1", "dcSignaling": True}, body

        await ws.send(frame("leave", {"sessionID": "pysess"}))
        t, data = await recv(ws)
        assert (t, data) == ("close", {"sessionID": "pysess"}), (t, data)

        status, _ = http("GET", base + "/calls/pycall/sessions", auth=basic)
        assert status == 404, status
    print("plugin flow ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
