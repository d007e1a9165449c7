"""jarip serve through the official `openai` Python SDK and raw HTTP:
- non-streamed chat: greedy text equals `jarip generate --chat` for the same prompt;
- streamed chat/completions: role delta first, deltas concatenate to the non-streamed text, a last chunk with
  finish_reason, a usage chunk with stream_options.include_usage, then [DONE];
- 16 concurrent streaming clients with mixed prompt lengths each get exactly their solo greedy output
  (batch invariance through continuous batching), and usage reports cached prompt tokens;
- seeded sampling (top-p, top-k, min-p) gives `jarip generate`'s text, alone and beside other requests;
- every bad input gets its 4xx (typed SDK exceptions where the SDK raises them), each followed by a good request;
- a client that disconnects frees its slot; the queue answers 429 with Retry-After when full;
- /metrics, /tokenize, /detokenize; SIGTERM stops the server with a stream open.
Usage: test_serve_openai.py path/to/jarip"""
import concurrent.futures as cf
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_fixture as fx  # noqa: E402

try:
    import openai
except ImportError:
    print("skip: the openai package is not installed (scripts/setup.sh installs it)")
    sys.exit(0)

JARIP = os.path.abspath(sys.argv[1])
failures = 0
KEY = "test-key-123"
SLOTS = 4
QUEUE = 12  # 16 concurrent clients = 4 decoding + 12 waiting


T0 = time.time()


def check(cond, msg):
    global failures
    msg = f"[{time.time() - T0:5.1f} s] {msg}"
    if not cond:
        failures += 1
        print("FAIL:", msg)
    else:
        print("ok:", msg)


def http(srv, path, body=None, key=KEY, method=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(srv.url + path, data=data, method=method)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def error_ok(status, body, want_status, want_in):
    try:
        err = json.loads(body)["error"]
        shape = set(err) == {"message", "type", "param", "code"}
    except Exception:
        return False, f"not an OpenAI error body: {body[:200]!r}"
    good = status == want_status and shape and want_in.lower() in err["message"].lower()
    return good, f"{status} {err['message'][:110]}"


def main():
    work = fx.workdir()
    model, smol = fx.model_path(JARIP, work)
    ctx = 512 if smol else 256
    srv = fx.Server(JARIP, model, "--slots", str(SLOTS), "--max-queue", str(QUEUE), "--ctx", str(ctx), "--threads", "2",
                    "--api-key", KEY, "--timeout", "2", "--max-body", "100000")
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0, timeout=120)
    try:
        run(srv, client, model, smol, ctx)
    finally:
        code = srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    check(code == 0, f"SIGTERM: the server exits 0 (got {code})")
    print(f"{failures} failure(s)")
    return 1 if failures else 0


def good_request(client, what):
    """A small request that must succeed after a bad one."""
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
                                       temperature=0)
    check(r.choices[0].finish_reason in ("stop", "length"), f"a good request after {what} succeeds")


def stream_chat(client, messages, max_tokens, **kw):
    chunks = list(client.chat.completions.create(model="m", messages=messages, max_tokens=max_tokens, temperature=0,
                                                 stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


def run(srv, client, model, smol, ctx):
    models = client.models.list()
    check(len(models.data) == 1 and models.data[0].id, f"/v1/models lists the model ({models.data[0].id})")
    st, _, body = http(srv, "/health", key=None)
    check(st == 200 and json.loads(body)["status"] == "ok", "/health is 200 ok without a key")

    # --- greedy chat equals jarip generate --chat ----------------------------------
    q = "What is the capital of France?" if smol else "The king"
    n = 24
    ref = subprocess.run([JARIP, "generate", "--model", model, "--chat", "--prompt", q, "-n", str(n), "--temperature",
                          "0", "--threads", "2", "--ctx", str(ctx)], capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_WAIT_POLICY="passive")).stdout
    msgs = [{"role": "user", "content": q}]
    r = client.chat.completions.create(model="m", messages=msgs, max_tokens=n, temperature=0)
    text = r.choices[0].message.content
    check(text == ref, f"greedy chat equals `jarip generate --chat` ({text[:60]!r})")
    check(r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.choices[0].message.role == "assistant",
          "chat.completion shape")
    check(r.usage.completion_tokens >= 1 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens,
          f"usage {r.usage.prompt_tokens}+{r.usage.completion_tokens}")

    # --- streaming: same text, OpenAI's event sequence ---------------------------------
    chunks, stext = stream_chat(client, msgs, n, stream_options={"include_usage": True})
    check(stext == text, "streamed deltas concatenate to the non-streamed text")
    check(chunks[0].choices[0].delta.role == "assistant", "the first delta carries the role")
    fin = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    check(len(fin) == 1 and fin[0].choices[0].finish_reason == r.choices[0].finish_reason,
          "one chunk with the finish_reason, the same as non-streamed")
    check(chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens,
          "a last usage chunk (choices: []) with stream_options.include_usage")
    check(chunks[-1].usage.prompt_tokens_details.cached_tokens > 0,
          f"the same prompt again finds its prefix cached ({chunks[-1].usage.prompt_tokens_details.cached_tokens} tokens)")
    st, hd, body = http(srv, "/v1/chat/completions", {"messages": msgs, "max_tokens": 3, "stream": True})
    events = [e for e in body.decode().split("\n\n") if e]
    check(st == 200 and "text/event-stream" in hd["Content-Type"] and events[-1] == "data: [DONE]"
          and all(e.startswith("data: ") for e in events), "SSE framing: data: lines, [DONE] last")

    # --- stop strings: the text ends before the first one, streamed or not -------------
    if len(text) >= 14:
        stop = text[10:14]
        want = text[:text.find(stop)]
        rs = client.chat.completions.create(model="m", messages=msgs, max_tokens=n, temperature=0, stop=[stop, "\x01"])
        _, ss = stream_chat(client, msgs, n, stop=stop)
        check(rs.choices[0].message.content == want and ss == want and rs.choices[0].finish_reason == "stop",
              f"stop {stop!r}: text cut before it ({want!r}), streamed too, finish_reason stop")
    else:
        check(False, f"greedy text too short for the stop-string check: {text!r}")

    # --- completions ------------------------------------------------------------------
    cq = "The capital of France is" if smol else "The king"
    c = client.completions.create(model="m", prompt=cq, max_tokens=12, temperature=0)
    sc = list(client.completions.create(model="m", prompt=cq, max_tokens=12, temperature=0, stream=True))
    check(c.object == "text_completion" and c.choices[0].text and "".join(x.choices[0].text for x in sc) == c.choices[0].text,
          f"completions: streamed text equals non-streamed ({c.choices[0].text[:40]!r})")
    lp = client.chat.completions.create(model="m", messages=msgs, max_tokens=4, temperature=0, logprobs=True,
                                        top_logprobs=3)
    ent = lp.choices[0].logprobs.content
    check(len(ent) >= 1 and len(ent[0].top_logprobs) == 3 and ent[0].logprob <= 0
          and abs(ent[0].logprob - ent[0].top_logprobs[0].logprob) < 1e-6,
          "logprobs: greedy token is the most likely of top_logprobs")

    # --- 16 concurrent streaming clients == their solo greedy output ---------------------
    words = "river apple tree house song bird queen friend".split()
    prompts = []
    for i in range(16):
        body = " ".join(words[(i + k) % len(words)] for k in range(1 + (i * 5) % 23))
        prompts.append([{"role": "user", "content": f"Say something about: {body}"}])
    m = 10
    t = time.time()
    solo = [stream_chat(client, p, m)[1] for p in prompts]
    t_solo = time.time() - t
    with cf.ThreadPoolExecutor(16) as ex:
        together = list(ex.map(lambda p: stream_chat(client, p, m)[1], prompts))
    print(f"16 prompts: {t_solo:.1f} s one after the other, {time.time() - t - t_solo:.1f} s together")
    same = sum(a == b for a, b in zip(solo, together))
    check(same == 16, f"16 concurrent streams equal their solo greedy output ({same}/16)")

    # --- seeded sampling: `jarip generate`'s text, alone and beside others -----------------
    # (the server samples a step's rows in parallel; top-p/top-k select part of the vocabulary)
    sn = 16
    ref = subprocess.run([JARIP, "generate", "--model", model, "--chat", "--prompt", q, "-n", str(sn), "--temperature",
                          "0.9", "--top-p", "0.9", "--top-k", "0", "--min-p", "0", "--seed", "7", "--threads", "2",
                          "--ctx", str(ctx)], capture_output=True, text=True, check=True,
                         env=dict(os.environ, OMP_WAIT_POLICY="passive")).stdout
    kinds = [dict(temperature=0.9, top_p=0.9, seed=7), dict(temperature=1.0, seed=11, extra_body={"top_k": 20}),
             dict(temperature=0.8, top_p=0.95, seed=3, extra_body={"top_k": 40, "min_p": 0.05}),
             dict(temperature=1.2, seed=5)]
    sp = [msgs] + prompts[:len(kinds) - 1]

    def sampled(i):
        r = client.chat.completions.create(model="m", messages=sp[i], max_tokens=sn, **kinds[i])
        return r.choices[0].message.content
    solo = [sampled(i) for i in range(len(kinds))]
    check(solo[0] == ref, f"seeded top-p sampling equals `jarip generate --seed 7` ({solo[0][:60]!r})")
    with cf.ThreadPoolExecutor(len(kinds)) as ex:
        together = list(ex.map(sampled, range(len(kinds))))
    same = sum(a == b for a, b in zip(solo, together))
    check(same == len(kinds), f"seeded sampled requests side by side equal their solo text ({same}/{len(kinds)})")

    # --- bad input: 4xx JSON errors, each followed by a good request ---------------------
    sdk_cases = [
        ("empty messages", openai.BadRequestError, dict(messages=[])),
        ("unknown role", openai.BadRequestError, dict(messages=[{"role": "wizard", "content": "x"}])),
        ("n=2", openai.BadRequestError, dict(messages=msgs, n=2)),
        ("negative max_tokens", openai.BadRequestError, dict(messages=msgs, max_tokens=-1)),
        ("temperature 5", openai.BadRequestError, dict(messages=msgs, temperature=5)),
        ("max_tokens 'many'", openai.BadRequestError, dict(messages=msgs, extra_body={"max_tokens": "many"})),
        ("max_tokens 1e8 as a number", openai.BadRequestError, dict(messages=msgs, extra_body={"max_tokens": 1e8})),
        ("content as a number", openai.BadRequestError, dict(messages=[{"role": "user", "content": 5}])),
        ("unknown field", openai.BadRequestError, dict(messages=msgs, extra_body={"grammar": "x"})),
        ("stop of 10000 bytes", openai.BadRequestError, dict(messages=msgs, stop="x" * 10000)),
        ("5 stop strings", openai.BadRequestError, dict(messages=msgs, stop=["a", "b", "c", "d", "e"])),
    ]
    for what, exc, kw in sdk_cases:
        try:
            client.chat.completions.create(model="m", **kw)
            check(False, f"{what}: accepted")
        except exc as e:
            check(e.status_code == 400 and e.body and "message" in e.body, f"{what}: {type(e).__name__} {e.message[:90]}")
        good_request(client, what)
    bad_key = openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0)
    try:
        bad_key.models.list()
        check(False, "wrong key accepted")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, "wrong API key: AuthenticationError (401)")
    good_request(client, "a wrong key")
    long_prompt = "apple " * (ctx + 50)
    try:
        client.completions.create(model="m", prompt=long_prompt, max_tokens=4)
        check(False, "over-long prompt accepted")
    except openai.BadRequestError as e:
        check(str(ctx) in e.message and "tokens" in e.message, f"prompt longer than the context: {e.message[:100]}")
    good_request(client, "an over-long prompt")
    # max_tokens far beyond the context is bounded by the room left (documented), not an error
    words = ctx
    while True:  # a prompt 4-12 tokens short of the context
        near = "apple " * words
        have = len(json.loads(http(srv, "/tokenize", {"content": near})[2])["tokens"])
        if have <= ctx - 4:
            break
        words = min(words - 1, words * (ctx - 8) // have)
    r2 = client.completions.create(model="m", prompt=near, max_tokens=100000000, temperature=0)
    check(r2.usage.prompt_tokens + r2.usage.completion_tokens <= ctx,
          f"max_tokens 1e8: bounded by the context ({r2.usage.prompt_tokens}+{r2.usage.completion_tokens} <= {ctx})")

    raw_cases = [
        ("malformed JSON", "/v1/chat/completions", b'{"messages": [', 400, "JSON"),
        ("body not an object", "/v1/chat/completions", b"[1,2]", 400, "object"),
        ("missing messages", "/v1/chat/completions", b'{"model": "m"}', 400, "messages"),
        ("invalid UTF-8", "/v1/chat/completions", b'{"messages":[{"role":"user","content":"\xff\xfe"}]}', 400, "UTF-8"),
        ("lone surrogate", "/v1/completions", b'{"prompt":"\\ud800"}', 400, "UTF-8"),
        ("prompt missing", "/v1/completions", b'{}', 400, "prompt"),
        ("detokenize bad id", "/detokenize", b'{"tokens":[-1]}', 400, "token"),
    ]
    for what, path, body, want, text in raw_cases:
        st, _, b = http(srv, path, body)
        good, msg = error_ok(st, b, want, text)
        check(good, f"{what}: {msg}")
        good_request(client, what)
    st, _, b = http(srv, "/v1/nope", key=KEY)
    check(error_ok(st, b, 404, "path")[0], "unknown path: 404")
    st, hd, b = http(srv, "/v1/chat/completions", key=KEY, method="GET")
    check(error_ok(st, b, 405, "POST")[0] and hd["Allow"] == "POST", "wrong method: 405 with Allow")
    st, _, b = http(srv, "/v1/chat/completions", {"messages": msgs}, key=None)
    check(error_ok(st, b, 401, "key")[0], "missing key: 401")
    st, _, b = http(srv, "/v1/completions", b'{"prompt": "' + b"a" * 200000 + b'"}')
    check(error_ok(st, b, 413, "max-body")[0], "body over --max-body: 413")
    good_request(client, "a body over the limit")
    # a client that sends its headers slowly is cut off by --timeout (2 s) and holds no slot
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    time.sleep(3.5)
    s.settimeout(5)
    try:
        closed = s.recv(100) == b""
    except (ConnectionResetError, socket.timeout):
        closed = True
    check(closed, "a client sending its headers slowly is disconnected after --timeout")
    s.close()
    good_request(client, "a slow client")

    # --- a client that leaves frees its slot; a full queue answers 429 ------------------
    def metric(name):
        t = http(srv, "/metrics")[2].decode()
        return float([ln.split()[-1] for ln in t.splitlines() if ln.startswith(name + " ")][0])

    def open_stream(max_tokens=400):
        s = socket.create_connection(("127.0.0.1", srv.port))
        # greedy: SmolLM2 continues this prompt for all 400 tokens without an end of text, so
        # no held client leaves early (a sampled one could, and free a queue place)
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": max_tokens, "stream": True,
                           "temperature": 0}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                  + body)
        return s

    held = [open_stream() for _ in range(SLOTS + QUEUE)]
    t0 = time.time()  # wait (on a loaded machine, for seconds) until the server holds them all
    while (metric("jarip_slots_active"), metric("jarip_queue_length")) != (SLOTS, QUEUE) and time.time() - t0 < 20:
        time.sleep(0.05)
    if smol:
        st, hd, b = http(srv, "/v1/completions", {"prompt": "x", "max_tokens": 2})
        check(error_ok(st, b, 429, "busy")[0] and hd["Retry-After"], "queue full: 429 with Retry-After")
        check(metric("jarip_slots_active") == SLOTS, "all slots busy while the clients hold them")
    else:
        print("note: the tiny model finishes its whole context within a second: the 429 check needs SmolLM2")
    for s in held:
        s.close()
    t0 = time.time()
    while metric("jarip_slots_active") > 0 and time.time() - t0 < 10:
        time.sleep(0.05)
    gone = time.time() - t0
    check(metric("jarip_slots_active") == 0 and metric("jarip_queue_length") == 0,
          f"clients that disconnect free their slots and queue places ({gone:.2f} s)")
    good_request(client, "16 disconnected clients")

    # --- metrics, tokenize ---------------------------------------------------------------
    t = http(srv, "/metrics")[2].decode()
    for name in ["jarip_requests_total{status=\"200\"}", "jarip_requests_total{status=\"400\"}",
                 "jarip_time_to_first_token_seconds_bucket", "jarip_inter_token_latency_seconds_count",
                 "jarip_generated_tokens_total", "jarip_queue_length", "jarip_slots_active"]:
        check(name in t, f"/metrics has {name}")
    st, _, b = http(srv, "/tokenize", {"content": "Hello world"})
    toks = json.loads(b)["tokens"]
    st2, _, b2 = http(srv, "/detokenize", {"tokens": toks})
    check(st == 200 and st2 == 200 and json.loads(b2)["content"] == "Hello world", f"tokenize/detokenize round trip {toks}")

    # --- SIGTERM with a stream open: the stream ends, the server exits ----------------------
    s = open_stream(300)
    s.settimeout(20)
    s.recv(100)
    srv.proc.send_signal(15)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    check(b"[DONE]" in data and b'"finish_reason":"length"' in data,
          "SIGTERM: an open stream gets its last chunk and [DONE]")


if __name__ == "__main__":
    sys.exit(main())
