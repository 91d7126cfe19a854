"""Servers on loopback for the scripts that start them (Benchmarks/serve_load.py,
Tests/replicas/replicas.py). Standard library only."""
import socket
import time
import urllib.request


def free_port():
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, timeout=120):
    """Returns once GET /ready (condense serve, or nginx in front of it) or /health (llama-server)
    answers 200; exits the script when neither does within `timeout` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        for path in ("/ready", "/health"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
        time.sleep(0.2)
    raise SystemExit(f"server on {port} not ready after {timeout}s")
