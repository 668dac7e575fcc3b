"""20 clients browse and chat at once while a run trains: no call fails, the run trains on through it and completes
(stopped, its adapter saved), and the latency of each kind of call is reported (test-artifacts/load.json; figures
quoted in RELIABILITY.md).
Latencies are reported, not asserted: the machine decides them."""

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from apptools import ROOT, App
from test_app import run_values, value_of

CLIENTS, ROUNDS = 20, 3


def test_twenty_clients_browse_and_chat_while_a_run_trains(tiny_model, tmp_path):
    from gradio_client import Client

    with App(tmp_path, cli=True) as app:  # served by `ftspace app` (the installed command), as a user starts it
        trainer = Client(app.url, verbose=False)
        run_id = value_of(trainer.predict("", *run_values(model_name=str(tiny_model), dataset="example:alpaca",
                                                          max_steps=100000, max_seq_length=64, save_steps=50,
                                                          backend="hf"), api_name="/start")[0])
        latencies: dict[str, list[float]] = {"runs": [], "progress": [], "card": [], "chat": []}
        errors: list[str] = []
        lock = threading.Lock()

        def timed(kind, call):
            t0 = time.perf_counter()
            result = call()
            with lock:
                latencies[kind].append(time.perf_counter() - t0)
            return result

        def visitor(n):
            try:
                client = Client(app.url, verbose=False)
                browser = f"visitor-{n}"
                for r in range(ROUNDS):
                    table = timed("runs", lambda: client.predict(browser, api_name="/runs"))
                    assert run_id in str(table)
                    status = timed("progress", lambda: client.predict(browser, run_id, api_name="/progress")[0])
                    assert run_id in status
                    timed("card", lambda: client.predict(browser, run_id, "x", api_name="/card"))
                    tuned, _, _ = timed("chat", lambda: client.predict(
                        browser, "a base model", None, str(tiny_model), "", "", 8, 0.0, 0.95, False,
                        f"hello from visitor {n}, round {r}", [], [], "its base model", api_name="/chat"))
                    assert tuned[-1]["role"] == "assistant" and tuned[-1]["content"]
            except Exception as e:  # collected, so one failure does not hide the others
                with lock:
                    errors.append(f"visitor {n}: {type(e).__name__}: {e}")

        t0 = time.time()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(visitor, range(CLIENTS)))
        wall = time.time() - t0
        assert errors == []
        during = trainer.predict("", run_id, api_name="/progress")[0]
        assert "**running**" in during, during  # the load came while the run trained (it is far from its end)

        # Then it is stopped: it saves its adapter after the current step and completes.
        trainer.predict("", run_id, api_name="/stop")
        deadline = time.time() + 120
        while "**completed**" not in (text := trainer.predict("", run_id, api_name="/progress")[0]):
            assert time.time() < deadline and "failed" not in text and "interrupted" not in text, text
            time.sleep(0.2)
        assert "stopped early" in text and (tmp_path / "runs" / run_id / "adapter" / "adapter_config.json").exists()
        assert app.alive()

    report = {"clients": CLIENTS, "rounds": ROUNDS, "wall_s": round(wall, 1), "status_after_load": during,
              "latency_s": {kind: {"calls": len(v), "p50": round(statistics.median(v), 3),
                                   "p95": round(sorted(v)[int(0.95 * (len(v) - 1))], 3), "max": round(max(v), 3)}
                            for kind, v in latencies.items()}}
    assert all(item["calls"] == CLIENTS * ROUNDS for item in report["latency_s"].values())
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
