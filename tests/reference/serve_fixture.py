"""Shared by the jarip serve tests: pick or make a model, start a server on a
free port of 127.0.0.1, stop it. Not a test itself (no test_ prefix)."""
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def corpus(path, lines=3000):
    """A small deterministic English-like corpus (as tests/e2e/lib.sh makes)."""
    subj = ["The king", "A dog", "The old man", "My friend", "The queen", "A small bird"]
    verb = ["saw", "liked", "found", "asked", "helped", "followed"]
    obj = ["the river", "a red apple", "the tall tree", "her brother", "the white house", "a quiet song"]
    with open(path, "w") as f:
        for i in range(lines):
            f.write(f"{subj[i % 6]} {verb[(i // 6) % 6]} {obj[(i // 36) % 6]}.\n")


def model_path(jarip, work):
    """SmolLM2 Q4_1 when present (JARIP_SERVE_MODEL overrides), else a
    llama-tiny trained a few steps and exported at Q8_0 (byte vocabulary),
    so CI always covers the server. Returns (path, is_smollm2)."""
    env = os.environ.get("JARIP_SERVE_MODEL")
    if env:
        return env, "SmolLM2" in env
    p = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(p) and not os.environ.get("JARIP_SERVE_TINY"):
        return p, True
    print("SmolLM2 absent (scripts/fetch_smollm2.sh): using a llama-tiny trained here")
    c = os.path.join(work, "corpus.txt")
    corpus(c)
    run = os.path.join(work, "tiny")
    subprocess.run([jarip, "train", "--preset", "llama-tiny", "--data", c, "--out", run, "--steps", "30", "--batch", "4",
                    "--seq", "64", "--lr", "3e-3", "--eval-every", "0", "--eval-batches", "1", "--threads", "2",
                    "--quiet"], check=True)
    out = os.path.join(work, "tiny.q8_0.gguf")
    subprocess.run([jarip, "export", "--ckpt", run, "--out", out, "--type", "q8_0"], check=True,
                   stderr=subprocess.DEVNULL)
    return out, False


class Server:
    """jarip serve on 127.0.0.1 with --port 0 (the kernel picks a free port;
    the server prints it)."""

    def __init__(self, jarip, model, *args, env=None):
        # OpenMP threads sleep at barriers instead of spinning: the clients of
        # the test share the cores with the server (see CMakeLists.txt)
        env = dict(env or os.environ, OMP_WAIT_POLICY="passive")
        self.proc = subprocess.Popen([jarip, "serve", "--model", model, "--port", "0", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            sys.exit(f"FAIL: server did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self, sig=None):
        """SIGTERM (or sig); returns the exit code. Fails the test on a hang."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig or 15)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            sys.exit("FAIL: the server did not stop within 20 s of SIGTERM")


def workdir():
    return tempfile.mkdtemp(prefix="jarip-serve-")


def raw(port, data, timeout=30):
    """Send raw bytes, return (status, headers text, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    buf = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head.startswith(b"HTTP/") else 0
    return status, head.decode("latin-1"), body
