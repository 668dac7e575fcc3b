"""Benchmark 3: `python app.py` to the first HTTP 200, and which heavy modules the UI process loaded.
Target: 3 s or less, none loaded. Median of --repeats launches."""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, save  # noqa: E402

HEAVY = ("torch", "transformers", "peft", "trl", "unsloth", "datasets")
PROBE = "import json, sys; import app; print(json.dumps([m for m in %r if m in sys.modules]))" % (HEAVY,)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_once() -> float:
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
           "FTSPACE_RUNS": tempfile.mkdtemp(prefix="ftspace-bench-cold-")}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                return time.perf_counter() - t0
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > 60:
                    raise RuntimeError("app did not start")
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    times = [launch_once() for _ in range(a.repeats)]
    loaded = json.loads(subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1])
    # What dominates: import time of the UI stack, measured the same way.
    imports = {}
    for module in ("gradio", "ftspace.ui"):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, check=True)
        imports[module] = round(time.perf_counter() - t, 2)
    result = {"first_http_200_s": {"median": round(statistics.median(times), 2), "all": [round(t, 2) for t in times]},
              "heavy_modules_loaded": loaded, "import_s": imports,
              "target": "<= 3 s to first 200, no heavy module",
              "met": statistics.median(times) <= 3.0 and not loaded}
    print(json.dumps(result, indent=1))
    save("coldstart", result)


if __name__ == "__main__":
    main()
