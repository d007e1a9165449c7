"""Serving soak (issue 16): jarip serve on loopback under mixed concurrent
clients for a bounded time, with hostile requests and clients that leave.

  serve_soak.py path/to/jarip [SECONDS] [CLIENTS]     (SECONDS <= 600; default 600, 12 clients)

1. Start jarip serve (SmolLM2 Q4_1 when present, else a llama-tiny trained
   here: tests/reference/serve_fixture.py) with 4 slots and an API key.
2. Solo answers: every prompt of the good set, alone, greedy (temperature 0),
   chat and completions: the reference each later answer must equal.
3. Warm-up: the mix below for a few seconds; then the server's RSS is taken.
4. Soak: CLIENTS threads for SECONDS, each picking at random:
   - a good request, streamed or not, chat or completions: its text must
     equal the solo answer (streamed: deltas concatenated, a finish_reason,
     then [DONE]);
   - a hostile one: bad JSON, a body over --max-body (chunked, and announced
     by Content-Length), wrong types, invalid UTF-8, an unknown path, a wrong
     method, a wrong key, a prompt over the context, an empty body: each
     must get its 4xx status with an OpenAI error body; and at the HTTP level
     a 20 KB path, a 200 KB header, a negative Content-Length, bytes that are
     not HTTP (closed), two pipelined requests (both answered);
   - a client that leaves: mid-stream, before the answer, or halfway through
     sending its request.
5. After: /metrics shows no active slot and an empty queue within 10 s, the
   RSS is within 5% of its warm-up value, a good request still gets its solo
   answer; SIGTERM with more streams open than slots: every stream gets its
   last event and [DONE], the server exits with code 0.
Prints every failure and a summary line; exits 1 on any failure.
The test suite runs it short (tests/reference/test_serve_soak.py)."""
import http.client
import json
import os
import random
import shutil
import socket
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import serve_fixture as fx  # noqa: E402

KEY = "soak-key"
SLOTS = 4
MAX_BODY = 65536
MAX_TOKENS = 12

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "List three fruits that are red.",
    "Why is the sky blue?",
    "The king saw the river and",
    "Explain a hash table in one sentence. " * 3,
]


class Soak:
    def __init__(self, port, ctx):
        self.port = port
        self.ctx = ctx
        self.lock = threading.Lock()
        self.failures = []
        self.counts = {}
        self.ref = {}

    def fail(self, msg):
        with self.lock:
            self.failures.append(msg)
            if len(self.failures) <= 30:
                print("FAIL:", msg, flush=True)

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    # ---- HTTP -----------------------------------------------------------------------------
    def conn(self, timeout=120):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, key=KEY, headers=None):
        """(status, headers, body bytes); retries a 429 (the queue is full)."""
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        h = {"Content-Type": "application/json"}
        if key:
            h["Authorization"] = "Bearer " + key
        h.update(headers or {})
        for _ in range(50):
            c = self.conn()
            try:
                c.request(method, path, body=data, headers=h)
                r = c.getresponse()
                out = r.status, r.getheaders(), r.read()
            finally:
                c.close()
            if out[0] != 429:
                return out
            self.count("429 retried")
            time.sleep(0.2)
        return out

    @staticmethod
    def body(kind, i, stream):
        if kind == "chat":
            b = {"messages": [{"role": "user", "content": PROMPTS[i]}]}
        else:
            b = {"prompt": PROMPTS[i]}
        b.update({"max_tokens": MAX_TOKENS, "temperature": 0, "seed": 1})
        if stream:
            b["stream"] = True
        return b

    @staticmethod
    def path(kind):
        return "/v1/chat/completions" if kind == "chat" else "/v1/completions"

    def whole(self, kind, i):
        """A non-streamed answer's text, or None (failure recorded)."""
        st, _, b = self.request("POST", self.path(kind), self.body(kind, i, False))
        if st != 200:
            self.fail(f"{kind} prompt {i}: status {st}: {b[:200]!r}")
            return None
        ch = json.loads(b)["choices"][0]
        return ch["message"]["content"] if kind == "chat" else ch["text"]

    def streamed(self, kind, i):
        """A streamed answer's text (deltas joined), or None."""
        c = self.conn()
        try:
            c.request("POST", self.path(kind), body=json.dumps(self.body(kind, i, True)).encode(),
                      headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
            r = c.getresponse()
            if r.status == 429:
                r.read()
                self.count("429 retried")
                time.sleep(0.2)
                return self.streamed(kind, i)
            if r.status != 200:
                self.fail(f"stream {kind} prompt {i}: status {r.status}: {r.read()[:200]!r}")
                return None
            text, finish, done = "", None, False
            for line in r:
                line = line.strip()
                if not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    done = True
                    break
                ev = json.loads(data)
                if "error" in ev:
                    self.fail(f"stream {kind} prompt {i}: error event {ev}")
                    return None
                for ch in ev["choices"]:
                    text += (ch["delta"].get("content") or "") if kind == "chat" else ch["text"]
                    finish = ch.get("finish_reason") or finish
            if not done or finish not in ("stop", "length"):
                self.fail(f"stream {kind} prompt {i}: [DONE] {done}, finish_reason {finish}")
                return None
            return text
        finally:
            c.close()

    # ---- the mix ----------------------------------------------------------------------------
    def good(self, rng):
        kind, i, stream = rng.choice(["chat", "completion"]), rng.randrange(len(PROMPTS)), rng.random() < 0.5
        text = self.streamed(kind, i) if stream else self.whole(kind, i)
        if text is None:
            return
        if text != self.ref[kind, i]:
            self.fail(f"{'streamed ' if stream else ''}{kind} prompt {i}: {text!r} != solo {self.ref[kind, i]!r}")
        else:
            self.count("good answered")

    def raw(self, data, read=True, timeout=30):
        """Send raw bytes; the status of the answer (0: none, the server closed)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered early and closed: read its answer
            if not read:
                return 0
            buf = b""
            while b"\r\n\r\n" not in buf:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                buf += chunk
            return int(buf.split()[1]) if buf.startswith(b"HTTP/") else 0
        finally:
            s.close()

    def hostile(self, rng):
        long_prompt = "word " * (self.ctx * 2)
        cases = [
            ("bad json", "POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"},', 400),
            ("wrong type messages", "POST", "/v1/chat/completions", {"messages": "hi"}, 400),
            ("wrong type prompt", "POST", "/v1/completions", {"prompt": 5}, 400),
            ("wrong type max_tokens", "POST", "/v1/completions", {"prompt": "x", "max_tokens": "ten"}, 400),
            ("bad temperature", "POST", "/v1/chat/completions",
             {"messages": [{"role": "user", "content": "x"}], "temperature": -1}, 400),
            ("unknown field", "POST", "/v1/completions", {"prompt": "x", "best_of": 3}, 400),
            ("bad role", "POST", "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400),
            ("invalid utf-8", "POST", "/v1/completions", b'{"prompt": "caf\xc3 \xff\xfe"}', 400),
            ("prompt over the context", "POST", "/v1/completions", {"prompt": long_prompt}, 400),
            ("empty body", "POST", "/v1/chat/completions", b"", 400),
            ("not an object", "POST", "/v1/completions", b"[1, 2, 3]", 400),
            ("unknown path", "POST", "/v1/engines/x/completions", {"prompt": "x"}, 404),
            ("wrong method", "GET", "/v1/chat/completions", None, 405),
            ("bad detokenize", "POST", "/detokenize", {"tokens": [-1, 10 ** 12]}, 400),
        ]
        # HTTP itself: sent raw, (request bytes, the status expected; 0: the server just closes)
        protocol = {
            "a 20 KB path": (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 404),
            # 431, unless the reset for the unread rest of the header overtakes it
            "a 200 KB header": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"b" * 200000 + b"\r\n\r\n", (431, 0)),
            "a negative Content-Length": (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}", 400),
            "not HTTP": (b"\x00\xff\xfe garbage\r\n\r\n", 0),
        }
        extra = [(w,) + (None,) * 3 + (st,) for w, st in [("wrong key", 401), ("body over --max-body (chunked)", 413),
                                                           ("Content-Length over --max-body", 413),
                                                           ("two requests pipelined", 200)]]
        extra += [(w, None, None, None, st) for w, (_, st) in protocol.items()]
        what, method, path, body, want = rng.choice(cases + extra)
        if what in protocol:
            st = self.raw(protocol[what][0])
        elif what == "two requests pipelined":
            s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            try:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                buf = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
            finally:
                s.close()
            st = 200 if buf.count(b"HTTP/1.1 200") == 2 else buf[:60]
        elif what == "wrong key":
            st = self.request("POST", "/v1/completions", {"prompt": "x"}, key="nope")[0]
        elif what.startswith("body over"):
            junk = b'{"prompt": "' + b"x" * (MAX_BODY * 2) + b'"}'
            data = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                    + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            for k in range(0, len(junk), 16384):
                piece = junk[k:k + 16384]
                data += b"%x\r\n" % len(piece) + piece + b"\r\n"
            st = self.raw(data + b"0\r\n\r\n")
        elif what.startswith("Content-Length"):
            st = self.raw(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                          + b"\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
        else:
            st, _, b = self.request(method, path, body)
            if st == want:
                try:
                    err = json.loads(b)["error"]
                    if set(err) != {"message", "type", "param", "code"}:
                        self.fail(f"{what}: error body {err}")
                except (ValueError, KeyError, TypeError):
                    self.fail(f"{what}: not an OpenAI error body: {b[:200]!r}")
        if st != want and not (isinstance(want, tuple) and st in want):
            self.fail(f"{what}: status {st}, expected {want}")
        else:
            self.count("hostile refused")

    def leave(self, rng):
        kind, i = rng.choice(["chat", "completion"]), rng.randrange(len(PROMPTS))
        how = rng.choice(["mid-stream", "before the answer", "half a request"])
        body = json.dumps(self.body(kind, i, how == "mid-stream") | {"max_tokens": 64}).encode()
        head = (f"POST {self.path(kind)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        try:
            if how == "half a request":
                s.sendall(head + body[: len(body) // 2])
                time.sleep(rng.random() * 0.2)
            elif how == "before the answer":
                s.sendall(head + body)
                time.sleep(rng.random() * 0.3)
            else:
                s.sendall(head + body)
                got = b""
                while got.count(b"data: ") < 2:  # leave after the first events
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
        finally:
            s.close()
        self.count("clients left " + how)

    def client(self, seed, until):
        rng = random.Random(seed)
        while time.time() < until:
            r = rng.random()
            try:
                if r < 0.5:
                    self.good(rng)
                elif r < 0.8:
                    self.hostile(rng)
                else:
                    self.leave(rng)
            except (OSError, http.client.HTTPException, ValueError) as e:
                self.fail(f"client {seed}: {type(e).__name__}: {e}")

    def run_clients(self, n, seconds, seed0):
        until = time.time() + seconds
        ts = [threading.Thread(target=self.client, args=(seed0 + k, until)) for k in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def metric(self, name):
        t = self.request("GET", "/metrics")[2].decode()
        return float([ln.split()[-1] for ln in t.splitlines() if ln.startswith(name + " ")][0])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int([ln.split()[1] for ln in f if ln.startswith("VmRSS:")][0])


def main():
    jarip = os.path.abspath(sys.argv[1])
    seconds = min(float(sys.argv[2]) if len(sys.argv) > 2 else 600, 600)
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    warm = max(5.0, min(60.0, seconds / 10))
    work = fx.workdir()
    model, smol = fx.model_path(jarip, work)
    ctx = 512 if smol else 256
    srv = fx.Server(jarip, model, "--slots", str(SLOTS), "--ctx", str(ctx), "--threads", "2", "--api-key", KEY,
                    "--max-body", str(MAX_BODY), "--max-queue", str(4 * clients), "--timeout", "10")
    t0 = time.time()
    sk = Soak(srv.port, ctx)
    code = None
    try:
        for kind in ("chat", "completion"):
            for i in range(len(PROMPTS)):
                sk.ref[kind, i] = sk.whole(kind, i)
        if any(v is None for v in sk.ref.values()):
            sys.exit("FAIL: the solo answers could not be computed")
        print(f"soak: {os.path.basename(model)}, {len(sk.ref)} solo answers; warm-up {warm:.0f} s, "
              f"soak {seconds:.0f} s with {clients} clients", flush=True)
        sk.run_clients(clients, warm, 1000)
        rss0 = rss_kib(srv.proc.pid)
        sk.counts.clear()
        sk.run_clients(clients, seconds, 0)
        t1 = time.time()
        while (sk.metric("jarip_slots_active") > 0 or sk.metric("jarip_queue_length") > 0) and time.time() - t1 < 10:
            time.sleep(0.1)
        idle = sk.metric("jarip_slots_active") == 0 and sk.metric("jarip_queue_length") == 0
        if not idle:
            sk.fail(f"slots leaked: {sk.metric('jarip_slots_active')} active, {sk.metric('jarip_queue_length')} queued "
                    "10 s after the last client")
        rss1 = rss_kib(srv.proc.pid)
        if abs(rss1 - rss0) > 0.05 * rss0:
            sk.fail(f"RSS {rss1} KiB after the soak against {rss0} KiB after warm-up ({100 * (rss1 / rss0 - 1):+.1f}%)")
        sk.good(random.Random(7))
        served = sk.metric('jarip_requests_total{status="200"}')
        # SIGTERM with streams open (more than the slots: some still queued):
        # each gets its last event and [DONE] before the server exits
        open_ = []
        for k in range(SLOTS + 2):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            body = json.dumps({"prompt": PROMPTS[k % len(PROMPTS)], "max_tokens": 200, "stream": True}).encode()
            s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
            open_.append(s)
        t1 = time.time()  # all of them in a slot or in the queue
        while sk.metric("jarip_slots_active") + sk.metric("jarip_queue_length") < SLOTS + 2 and time.time() - t1 < 10:
            time.sleep(0.02)
        code = srv.stop()
        for k, s in enumerate(open_):
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            s.close()
            if b"data: [DONE]" not in data:
                sk.fail(f"SIGTERM: open stream {k} got no [DONE] ({data[-120:]!r})")
    finally:
        code = srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    if code != 0:
        sk.fail(f"SIGTERM: exit code {code}")
    c = sk.counts
    print(f"soak: {seconds:.0f} s, {clients} clients: {c.get('good answered', 0)} good answers equal to their solo "
          f"answer, {c.get('hostile refused', 0)} hostile requests refused, "
          f"{sum(v for k, v in c.items() if k.startswith('clients left'))} clients left early "
          f"({', '.join(f'{k[13:]} {v}' for k, v in sorted(c.items()) if k.startswith('clients left'))}), "
          f"{c.get('429 retried', 0)} 429s retried; {served:.0f} 200s in all; idle afterwards: {idle}; "
          f"RSS {rss0} -> {rss1} KiB ({100 * (rss1 / rss0 - 1):+.2f}%); {len(sk.failures)} failures; "
          f"{time.time() - t0:.0f} s in all", flush=True)
    return 1 if sk.failures else 0


if __name__ == "__main__":
    sys.exit(main())
