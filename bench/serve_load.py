"""Load generator for OpenAI-compatible servers (bench/serve_vs_llamacpp.sh),
in the spirit of vLLM's benchmark_serving: C concurrent clients, each sending
streaming chat requests from a fixed prompt set one after the other for a
bounded time; every SSE event is timed as it arrives.

  serve_load.py URL CLIENTS SECONDS MAX_TOKENS [PID]

Prints one JSON line: requests done and failed, output tokens (content
deltas counted as tokens: both servers send one event per token), aggregate
output tokens/s and requests/s over the run, time to first token and
inter-token latency (median, p99) in ms, and the server's peak RSS (VmHWM of
PID, when given). Raw sockets, no client library: the client's own overhead
is a few microseconds per event."""
import json
import socket
import statistics
import sys
import threading
import time
from urllib.parse import urlparse

PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a hash table is in two sentences.",
    "List three fruits that are red.",
    "How do airplanes stay in the air? Answer briefly.",
    "Translate 'good morning' into Spanish, French and German.",
    "Give me a recipe for a simple tomato soup.",
    "What is 17 times 23? Show the steps.",
    "Summarize the plot of Romeo and Juliet in one paragraph. " * 3,
    "Describe the water cycle for a ten year old.",
    "Why is the sky blue?",
    "Write a haiku about autumn leaves.",
]


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def one_request(host, port, prompt, max_tokens, stats):
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                       "temperature": 0, "stream": True}).encode()
    t0 = time.perf_counter()
    s = socket.create_connection((host, port), timeout=600)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: application/json"
              b"\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    raw, buf, times, ok, head, chunked = b"", b"", [], False, None, False
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        now = time.perf_counter()
        raw += chunk
        if head is None:
            if b"\r\n\r\n" not in raw:
                continue
            head, _, raw = raw.partition(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n")[0]:
                break
            chunked = b"transfer-encoding: chunked" in head.lower()
        if chunked:  # take whole chunks out of raw: "<hex size>\r\n<data>\r\n"
            while b"\r\n" in raw:
                size_line, _, rest = raw.partition(b"\r\n")
                size = int(size_line.split(b";")[0] or b"0", 16)
                if len(rest) < size + 2:
                    break
                buf += rest[:size]
                raw = rest[size + 2:]
        else:
            buf, raw = buf + raw, b""
        while b"\n\n" in buf:
            ev, _, buf = buf.partition(b"\n\n")
            for line in ev.split(b"\n"):
                line = line.strip()
                if not line.startswith(b"data: "):
                    continue
                d = line[6:]
                if d == b"[DONE]":
                    ok = True
                    continue
                try:
                    j = json.loads(d)
                except ValueError:
                    continue
                ch = j.get("choices") or []
                if ch and (ch[0].get("delta") or {}).get("content"):
                    times.append(now)
    s.close()
    with stats["lock"]:
        if ok and times:
            stats["done"] += 1
            stats["tokens"] += len(times)
            stats["ttft"].append(times[0] - t0)
            stats["itl"].extend(b - a for a, b in zip(times, times[1:]))
        else:
            stats["failed"] += 1


def client(i, host, port, deadline, max_tokens, stats):
    k = i
    while time.perf_counter() < deadline:
        try:
            one_request(host, port, PROMPTS[k % len(PROMPTS)], max_tokens, stats)
        except OSError:
            with stats["lock"]:
                stats["failed"] += 1
        k += 1


def main():
    url, clients, seconds, max_tokens = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    pid = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    u = urlparse(url)
    stats = {"lock": threading.Lock(), "done": 0, "failed": 0, "tokens": 0, "ttft": [], "itl": []}
    t0 = time.perf_counter()
    ths = [threading.Thread(target=client, args=(i, u.hostname, u.port, t0 + seconds, max_tokens, stats))
           for i in range(clients)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.perf_counter() - t0
    rss = 0
    if pid:
        with open(f"/proc/{pid}/status") as f:
            rss = int([ln for ln in f if ln.startswith("VmHWM:")][0].split()[1]) // 1024
    ms = lambda x: round(x * 1000, 1)  # noqa: E731
    print(json.dumps({"clients": clients, "requests": stats["done"], "failed": stats["failed"],
                      "out_tok_s": round(stats["tokens"] / wall, 1), "req_s": round(stats["done"] / wall, 2),
                      "ttft_med_ms": ms(statistics.median(stats["ttft"])) if stats["ttft"] else None,
                      "ttft_p99_ms": ms(pct(stats["ttft"], 99)), "itl_med_ms": ms(pct(stats["itl"], 50)),
                      "itl_p99_ms": ms(pct(stats["itl"], 99)), "peak_rss_mib": rss, "wall_s": round(wall, 1)}))


if __name__ == "__main__":
    main()
