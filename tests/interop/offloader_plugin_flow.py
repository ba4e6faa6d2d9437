"""Drives calls-offloader as the Calls plugin does, with a third-party HTTP client (requests):
GET /version (semver check) -> POST /jobs/init with Basic auth (self-registration) ->
POST /jobs for a recording and a transcription -> the jobs finish and their records go.

Usage: offloader_plugin_flow.py http://127.0.0.1:PORT
Exits non-zero with a message on the first deviation.
"""
import json
import sys
import time

import requests

# The plugin's client ID is the server's 26-char diagnostic ID; its key 32 random chars.
CLIENT_ID = "pyplugin7mxtgu8rzofz9pijzz"
AUTH_KEY = "Zk3v0_aJ9XyQ-u1bW2cD4eF5gH6iJ7kL"
RECORDER = "mattermost/calls-recorder:v0.8.13"
TRANSCRIBER = "mattermost/calls-transcriber:v0.7.2"


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def go_json(obj):
    # Go's json.Encoder: compact, trailing newline.
    return json.dumps(obj, separators=(",", ":")) + "\n"


def main():
    base = sys.argv[1].rstrip("/")
    s = requests.Session()
    s.auth = (CLIENT_ID, AUTH_KEY)

    r = requests.get(base + "/version", timeout=10)
    info = r.json()
    if r.status_code != 200:
        fail("version status %d" % r.status_code)
    v = info["buildVersion"]
    if not (v == "" or v == "master" or v.startswith("dev")):
        parts = tuple(int(x) for x in v.lstrip("v").split("-")[0].split("."))
        if parts < (0, 9, 0):
            fail("buildVersion %s < v0.9.0" % v)

    r = s.post(base + "/jobs/init", data=go_json({"Runners": [RECORDER, TRANSCRIBER]}), timeout=150)
    if r.status_code != 200 or r.content != b"":
        fail("init: %d %r" % (r.status_code, r.content))

    ids = []
    for job_type, runner, input_data in [
        ("recording", RECORDER, {
            "site_url": "http://mm.test:8065", "call_id": "c" * 26, "post_id": "p" * 26,
            "recording_id": "r" * 26, "auth_token": "t" * 26, "width": 1280, "height": 720,
            "video_rate": 1500, "audio_rate": 64, "frame_rate": 20, "video_preset": "veryfast",
            "output_format": "mp4", "sleep_sec": 1,
        }),
        ("transcribing", TRANSCRIBER, {
            "site_url": "http://mm.test:8065", "call_id": "c" * 26, "post_id": "p" * 26,
            "transcription_id": "x" * 26, "auth_token": "t" * 26, "transcribe_api": "whisper.cpp",
            "transcribe_api_options": "null", "model_size": "base", "output_format": "vtt",
            "num_threads": 2, "live_captions_on": True, "sleep_sec": 1,
        }),
    ]:
        body = {"type": job_type, "max_duration_sec": 3600 if job_type == "recording" else 7200,
                "runner": runner, "input_data": input_data}
        r = s.post(base + "/jobs", data=go_json(body), timeout=150)
        if r.status_code != 200:
            fail("create %s: %d %s" % (job_type, r.status_code, r.text))
        job = r.json()
        if not job.get("id"):
            fail("no id in %s" % r.text)
        ids.append(job["id"])

    # The same client ID with another key is refused (the first key was registered).
    r = requests.post(base + "/jobs/init", data=go_json({"Runners": [RECORDER]}),
                      auth=(CLIENT_ID, "another-key-another-key-another!"), timeout=10)
    if r.status_code != 401 or r.json() != {"code": "401", "error": "authentication failed"}:
        fail("wrong key: %d %s" % (r.status_code, r.text))

    deadline = time.time() + 30
    for job_id in ids:
        while True:
            r = s.get(base + "/jobs/" + job_id, timeout=10)
            if r.status_code == 404:
                break
            if time.time() > deadline:
                fail("job %s not cleaned up: %d %s" % (job_id, r.status_code, r.text))
            time.sleep(0.2)
    print("offloader plugin flow ok")


if __name__ == "__main__":
    main()
