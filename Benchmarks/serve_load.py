#!/usr/bin/env python3
"""Load test of `condense serve` with the official `openai` client (pip install openai), and the
same load on llama.cpp's llama-server (Benchmarks/peers/build_llama_cpp.sh) for chat.

  python3 Benchmarks/serve_load.py --chat-model M.gguf --embedding-model DIR [--peers]
      [--chat-concurrency 1,8,32] [--embed-concurrency 1,8,64] [--requests 64] [--max-tokens 64] [--reps 2]
      [--system-prompt-tokens 1000]

Per test and concurrency: requests sent, responses checked (status, shape, and for greedy chat
that every response to the same prompt is the same text), throughput, p50/p99 latency, time to
first token and inter-token latency p50/p99 (streaming chat). Chat forces equal work: every
answer is exactly --max-tokens long on both servers (`ignore_eos`, which both accept; each
record shows its token total beside the total equal work implies), unless --natural-length;
with --peers the two servers alternate per level and repetition. Embeddings are compared with `condense embed` run offline on the
same sentences (the server's overhead). The client retries a request whose pooled connection the
server had closed (llama-server closes idle keep-alive connections), as the openai client does by
default. Prints one JSON record per line; both servers run with
2 threads on this machine's 2 cores.
"""
import argparse, asyncio, json, os, statistics, subprocess, sys, tempfile, time

from loopback import free_port, wait_ready

from openai import AsyncOpenAI

SENTENCES = [line.strip() for line in open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sentences.txt")) if line.strip()]
PROMPTS = ["Write a short story about a robot.", "What is the capital of Germany?", "List three colors.", "Explain photosynthesis briefly."]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def drive(port, concurrency, requests, one):
    """Runs one(client, i) for i < requests, at most `concurrency` at a time; returns the wall time."""
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=2, timeout=600)
    sem = asyncio.Semaphore(concurrency)

    async def limited(i):
        async with sem:
            await one(client, i)

    t0 = time.perf_counter()
    await asyncio.gather(*(limited(i) for i in range(requests)))
    wall = time.perf_counter() - t0
    await client.close()
    return wall


def system_prompt(tokens):
    """About `tokens` tokens of plain text (sentences of the embedding set, ~1.3 tokens a word)."""
    words, out, i = int(tokens / 1.3), [], 0
    while sum(len(x.split()) for x in out) < words:
        out.append(SENTENCES[i % len(SENTENCES)])
        i += 1
    return "You answer questions. Background you may use:\n" + " ".join(out)


async def chat_load(port, model, concurrency, requests, max_tokens, equal_length, system=None):
    results, gaps = [], []
    # Equal work: both servers generate exactly max_tokens per answer (vLLM's and llama-server's
    # ignore_eos), so neither looks faster by stopping early.
    extra = {"ignore_eos": True} if equal_length else {}

    async def one(client, i):
        t0 = time.perf_counter()
        first, last, text, tokens = None, None, "", 0
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
        stream = await client.chat.completions.create(model=model, messages=messages,
                                                      max_tokens=max_tokens, temperature=0, stream=True,
                                                      stream_options={"include_usage": True}, extra_body=extra)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                now = time.perf_counter()
                first = first or now
                if last is not None:
                    gaps.append(now - last)
                last = now
                text += chunk.choices[0].delta.content
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        results.append((i, time.perf_counter() - t0, (first or time.perf_counter()) - t0, tokens, text))

    wall = await drive(port, concurrency, requests, one)
    # Greedy: the same prompt must give the same text in every response.
    by_prompt = {}
    for i, _, _, _, text in results:
        by_prompt.setdefault(i % len(PROMPTS), set()).add(text)
    consistent = all(len(v) == 1 for v in by_prompt.values())
    lat = [r[1] for r in results]
    ttft = [r[2] for r in results]
    first = [r[2] for r in results if r[0] == 0]
    return {"sent": requests, "checked": len(results), "consistent": consistent, "tokens": sum(r[3] for r in results),
            "tokens_if_equal": requests * max_tokens if equal_length else None,
            "tok_s": sum(r[3] for r in results) / wall, "p50_s": pct(lat, 50), "p99_s": pct(lat, 99),
            "ttft_p50_s": pct(ttft, 50), "ttft_p99_s": pct(ttft, 99),
            # A shared system prompt: the first request computes it, the later ones may reuse it.
            "ttft_first_s": first[0] if first else None,
            "ttft_rest_p50_s": pct([r[2] for r in results if r[0] != 0], 50) if len(results) > 1 else None,
            "itl_p50_s": pct(gaps, 50) if gaps else None, "itl_p99_s": pct(gaps, 99) if gaps else None, "wall_s": wall}


async def embed_load(port, model, concurrency, requests):
    results = []

    async def one(client, i):
        t0 = time.perf_counter()
        r = await client.embeddings.create(model=model, input=SENTENCES[i % len(SENTENCES)])
        v = r.data[0].embedding
        ok = len(v) == 384 and abs(sum(x * x for x in v) - 1) < 1e-3
        results.append((time.perf_counter() - t0, ok))

    wall = await drive(port, concurrency, requests, one)
    lat = [r[0] for r in results]
    return {"sent": requests, "checked": sum(r[1] for r in results), "sentences_s": requests / wall,
            "p50_s": pct(lat, 50), "p99_s": pct(lat, 99), "wall_s": wall}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chat-model")
    ap.add_argument("--embedding-model")
    ap.add_argument("--condense", default=".build/release/condense")
    ap.add_argument("--chat-concurrency", default="1,8,32")
    ap.add_argument("--embed-concurrency", default="1,8,64")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--peers", action="store_true")
    ap.add_argument("--reps", type=int, default=1, help="chat: repetitions per level, the two servers interleaved")
    ap.add_argument("--natural-length", action="store_true", help="chat: let answers stop at EOS (unequal work)")
    ap.add_argument("--system-prompt-tokens", type=int, default=0,
                    help="chat: a shared system prompt of about this many tokens in every request (prefix caching; llama-server's prompt cache is on by default)")
    ap.add_argument("--no-prefix-cache", action="store_true", help="condense serve --prefix-cache-mb 0 (what the cache buys)")
    a = ap.parse_args()
    equal = not a.natural_length
    system = system_prompt(a.system_prompt_tokens) if a.system_prompt_tokens > 0 else None
    env = dict(os.environ, CONDENSE_NUM_THREADS="2")
    port = free_port()
    cmd = [a.condense, "serve", "--port", str(port), "--max-concurrent", str(max(int(c) for c in a.chat_concurrency.split(",")))]
    if a.chat_model:
        cmd += ["--chat-model", a.chat_model, "--chat-model-name", "chat"] + (["--prefix-cache-mb", "0"] if a.no_prefix_cache else [])
    if a.embedding_model:
        cmd += ["--embedding-model", a.embedding_model, "--embedding-model-name", "embed"]
    server = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        if a.embedding_model:
            # Offline with the load taken out: two runs of n and 3n sentences, the rate of the
            # difference (load, placement and process start cancel).
            with tempfile.TemporaryDirectory() as d:
                def offline_seconds(n):
                    path = os.path.join(d, f"s{n}.txt")
                    open(path, "w").write("\n".join(SENTENCES[i % len(SENTENCES)] for i in range(n)) + "\n")
                    t0 = time.perf_counter()
                    subprocess.run([a.condense, "embed", "--model", a.embedding_model, "--input", path, "--output", os.path.join(d, "e.npy")],
                                   env=env, check=True, capture_output=True)
                    return time.perf_counter() - t0
                n = max(a.requests, 256)
                t1, t3 = offline_seconds(n), offline_seconds(3 * n)
                offline = 2 * n / max(t3 - t1, 1e-9)
            print(json.dumps({"backend": "condense embed (offline, load excluded)", "test": "embeddings", "sentences_s": offline,
                              "seconds_n": t1, "seconds_3n": t3, "n": n}), flush=True)
            for c in map(int, a.embed_concurrency.split(",")):
                r = asyncio.run(embed_load(port, "embed", c, max(a.requests, 4 * c)))
                print(json.dumps({"backend": "condense serve", "test": "embeddings", "concurrency": c, **r}), flush=True)
        if a.chat_model:
            root = os.environ.get("CONDENSE_LLAMA_CPP_DIR", os.path.expanduser("~/.cache/condense/llama.cpp"))
            exe = os.path.join(root, "bin", "llama-server")
            peers = a.peers and os.path.exists(exe)
            if a.peers and not peers:
                print("llama-server not built (bash Benchmarks/peers/build_llama_cpp.sh); peer skipped", file=sys.stderr)
            # Per level and repetition: Condense, then llama-server (Condense's server idles meanwhile),
            # so drift in the host's speed falls on both alike.
            for c in map(int, a.chat_concurrency.split(",")):
                n = max(a.requests, 2 * c)
                for rep in range(a.reps):
                    r = asyncio.run(chat_load(port, "chat", c, n, a.max_tokens, equal, system))
                    print(json.dumps({"backend": "condense serve", "test": "chat stream", "concurrency": c, "rep": rep, **r}), flush=True)
                    if not peers:
                        continue
                    pport = free_port()
                    peer = subprocess.Popen([exe, "-m", a.chat_model, "-t", "2", "-tb", "2", "--port", str(pport), "-np", str(c),
                                             "-c", str(max(512, 2 * a.system_prompt_tokens + 2 * a.max_tokens + 128) * c), "--no-webui"], env=dict(env, LD_LIBRARY_PATH=os.path.join(root, "bin")),
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    try:
                        wait_ready(pport)
                        r = asyncio.run(chat_load(pport, "chat", c, n, a.max_tokens, equal, system))
                        print(json.dumps({"backend": "llama-server", "test": "chat stream", "concurrency": c, "rep": rep, **r}), flush=True)
                    finally:
                        peer.terminate()
                        peer.wait(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=60)
        print(json.dumps({"backend": "condense serve", "test": "SIGTERM exit status", "status": server.returncode}), flush=True)


if __name__ == "__main__":
    main()
