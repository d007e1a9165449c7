"""The serving soak of bench/serve_soak.py, short: 30 s of 6 mixed clients
(good requests streamed or not, hostile requests, clients that leave) after
the solo answers and a warm-up. Every good answer must equal its solo
answer, every hostile request get its 4xx, the slots be idle afterwards, the
RSS stay within 5% of its warm-up value. JARIP_SOAK_SECONDS changes the length.
Usage: test_serve_soak.py path/to/jarip"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
seconds = os.environ.get("JARIP_SOAK_SECONDS", "30")
sys.exit(subprocess.run([sys.executable, os.path.join(ROOT, "bench", "serve_soak.py"), sys.argv[1], seconds, "6"]).returncode)
