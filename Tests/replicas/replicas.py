#!/usr/bin/env python3
"""Two `condense serve` replicas behind nginx on loopback; one is sent SIGTERM mid-load.

  python3 Tests/replicas/replicas.py CONDENSE_BINARY CHAT_GGUF EMBEDDING_DIR [--sigkill]

(--sigkill: the replica is killed instead of drained — the checks must then fail, which shows
they can.)

Checks, printed and as the exit status (0: all hold):
  * every request ends in a complete answer (a stream with its finish reason and [DONE], exactly
    max_tokens tokens; an embedding of 384 floats) or a retryable status (429, 502, 503) — never a
    stream cut mid-answer, never another error;
  * the replica that got SIGTERM finishes what it had and exits 0;
  * the survivor takes over: a second wave after the exit is answered in full through nginx.
nginx retries a request that a draining replica refuses (503) or that cannot connect on the
other replica (proxy_next_upstream), as a load balancer in front of replicas would.
Standard library only: http.client, threads.
"""
import http.client, json, os, signal, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Benchmarks"))
from loopback import free_port, wait_ready  # noqa: E402

MAX_TOKENS = 96


def chat(port, i, results):
    body = json.dumps({"messages": [{"role": "user", "content": f"Count to ten, run {i}."}], "max_tokens": MAX_TOKENS,
                       "temperature": 0, "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}})
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            r.read()
            results.append(("chat", r.status, "retryable" if r.status in (429, 502, 503) else "error"))
            return
        data = r.read().decode()   # the whole event stream; a cut connection raises or ends early
        events = [l[6:] for l in data.split("\n") if l.startswith("data: ")]
        done = events and events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events if e != "[DONE]"]
        finish = [ch["finish_reason"] for o in chunks for ch in o.get("choices", []) if ch.get("finish_reason")]
        usage = [o["usage"]["completion_tokens"] for o in chunks if o.get("usage")]
        ok = done and finish == ["length"] and usage == [MAX_TOKENS]
        results.append(("chat", 200, "complete" if ok else f"cut: done={done} finish={finish} usage={usage}"))
    except Exception as e:   # a stream that broke mid-answer
        results.append(("chat", -1, f"cut: {e!r}"))


def embed(port, i, results):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("POST", "/v1/embeddings", json.dumps({"input": f"sentence number {i}"}), {"Content-Type": "application/json"})
        r = c.getresponse()
        payload = r.read()
        if r.status != 200:
            results.append(("embed", r.status, "retryable" if r.status in (429, 502, 503) else "error"))
            return
        v = json.loads(payload)["data"][0]["embedding"]
        results.append(("embed", 200, "complete" if len(v) == 384 else f"bad vector of {len(v)}"))
    except Exception as e:
        results.append(("embed", -1, f"error: {e!r}"))


def wave(port, n):
    results, threads = [], []
    for i in range(n):
        threads.append(threading.Thread(target=chat, args=(port, i, results)))
        threads.append(threading.Thread(target=embed, args=(port, i, results)))
    for t in threads:
        t.start()
    return threads, results


def main():
    binary, chat_model, embed_model = sys.argv[1:4]
    kill = signal.SIGKILL if "--sigkill" in sys.argv[4:] else signal.SIGTERM
    tmp = tempfile.mkdtemp(prefix="condense-replicas-")
    env = dict(os.environ, CONDENSE_NUM_THREADS="1")
    ports = [free_port(), free_port()]
    replicas = [subprocess.Popen([binary, "serve", "--port", str(p), "--chat-model", chat_model, "--embedding-model", embed_model,
                                  "--max-concurrent", "8"], env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"r{p}.log"), "w"))
                for p in ports]
    front = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    open(conf, "w").write(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    upstream condense {{ server 127.0.0.1:{ports[0]} max_fails=0; server 127.0.0.1:{ports[1]} max_fails=0; }}
    server {{
        listen 127.0.0.1:{front};
        location / {{
            proxy_pass http://condense;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;            # server-sent events pass through as they come
            proxy_read_timeout 120s;
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 2;
        }}
    }}
}}
""")
    nginx = subprocess.Popen(["nginx", "-p", tmp, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failures = []
    try:
        for p in ports:
            wait_ready(p)
        wait_ready(front)
        t0 = time.time()
        threads, results = wave(front, 12)
        time.sleep(0.5)   # streams in flight on both replicas
        c = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
        c.request("GET", "/metrics")
        metrics = c.getresponse().read().decode()
        active = [float(l.split()[-1]) for l in metrics.split("\n") if l.startswith("condense_generation_active_streams")]
        replicas[0].send_signal(kill)
        if not active or active[0] < 1:
            failures.append(f"no stream was in flight on the replica at SIGTERM ({active})")
        time.sleep(0.2)   # requests that arrive while it drains: refused there, retried on the other
        late, late_results = wave(front, 6)
        for t in threads + late:
            t.join()
        results += late_results
        seconds = time.time() - t0
        status = replicas[0].wait(timeout=120)
        if status != 0:
            failures.append(f"the signalled replica exited {status}")
        complete = sum(1 for r in results if r[2] == "complete")
        retryable = sum(1 for r in results if r[2] == "retryable")
        bad = [r for r in results if r[2] not in ("complete", "retryable")]
        print(json.dumps({"wave": 1, "requests": len(results), "complete": complete, "retryable": retryable, "bad": bad,
                          "seconds": round(seconds, 2), "streams_in_flight_at_sigterm": active[0] if active else None}))
        if seconds < 1.0:
            failures.append(f"wave 1 took {seconds:.2f} s: the SIGTERM at 0.5 s did not fall mid-load")
        failures += [f"wave 1: {r}" for r in bad]
        # The survivor alone: every request through nginx is answered in full.
        threads, results = wave(front, 6)
        for t in threads:
            t.join()
        bad = [r for r in results if r[2] != "complete"]
        print(json.dumps({"wave": 2, "requests": len(results), "complete": len(results) - len(bad), "bad": bad}))
        failures += [f"wave 2: {r}" for r in bad]
    finally:
        nginx.terminate()
        for r in replicas:
            if r.poll() is None:
                r.terminate()
                r.wait(timeout=60)
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
