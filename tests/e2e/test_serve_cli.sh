#!/usr/bin/env bash
# jarip serve's command line: bad flags and files are one-line errors, a port
# in use is named, and --help documents every flag. (The server itself is
# tested through HTTP by tests/reference/test_serve_*.py.)
source "$(dirname "$0")/lib.sh"
expect_error "--model FILE or --ckpt DIR" -- "$JARIP" serve
expect_error "unknown flag" -- "$JARIP" serve --model x.gguf --bogus
expect_error "out of range" -- "$JARIP" serve --model x.gguf --port 70000
expect_error "not f16 or f32" -- "$JARIP" serve --model x.gguf --kv-type q9
expect_error "x.gguf" -- "$JARIP" serve --model "$WORK/x.gguf" --port 0
expect_error "not an IPv4" -- "$JARIP" serve --model "$WORK/x.gguf" --host nowhere --port 0
expect_error "ckpt" -- "$JARIP" serve --ckpt "$WORK/no-such-run" --port 0
printf 'not a gguf' > "$WORK/bad.gguf"
expect_error "bad.gguf" -- "$JARIP" serve --model "$WORK/bad.gguf" --port 0
# a port someone else holds
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
/usr/bin/python3 -c "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',$port)); s.listen(); time.sleep(30)" &
holder=$!
sleep 0.5
expect_error "cannot listen" -- "$JARIP" serve --model "$WORK/bad.gguf" --port "$port"
kill $holder
"$JARIP" serve --help > "$WORK/help"
for f in --model --ckpt --host --port --slots --ctx --batch --threads --api-key --max-queue --max-body --timeout --alias --kv-type; do
  grep -q -- "$f" "$WORK/help" || fail "serve --help does not document $f"
done
pass "serve --help documents every flag"
