#!/usr/bin/env python3
"""SIGTERM under load: start `condense serve`, begin streaming generations, send SIGTERM once
tokens flow, and report whether the streams in flight finished ([DONE], all tokens), what a new
request got, and the exit status. Prints one JSON object. Standard library only.

  drain.py CONDENSE_BINARY MODEL.gguf
"""
import http.client, json, os, signal, socket, subprocess, sys, threading, time

exe, model = sys.argv[1], sys.argv[2]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([exe, "serve", "--chat-model", model, "--port", str(port)], stderr=subprocess.DEVNULL)
deadline = time.time() + 60
while time.time() < deadline:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/health")
        if c.getresponse().status == 200:
            break
    except OSError:
        time.sleep(0.1)
started = threading.Event()
results = []


def stream(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 150, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}})
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    text, done, tokens = "", False, 0
    buf = b""
    while True:
        chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            data = event.decode()[6:]
            if data == "[DONE]":
                done = True
                continue
            o = json.loads(data)
            if o.get("usage"):
                tokens = o["usage"]["completion_tokens"]
            for ch in o.get("choices", []):
                text += ch.get("text", "")
                started.set()
    results.append({"status": r.status, "done": done, "tokens": tokens})


threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
for t in threads:
    t.start()
started.wait(60)
server.send_signal(signal.SIGTERM)
time.sleep(0.05)
try:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("POST", "/v1/completions", json.dumps({"prompt": "hi", "max_tokens": 2}), {"Content-Type": "application/json"})
    after = c.getresponse().status
except OSError as e:
    after = "refused"
for t in threads:
    t.join(60)
try:
    code = server.wait(timeout=30)
except subprocess.TimeoutExpired:
    server.kill()
    code = "timeout"
print(json.dumps({"streams": results, "after_sigterm": after, "exit": code}))
