"""The suite's own guards: a test's processes end with it, hangs are cut short, the log says where time went."""

import os
import subprocess
import sys
import time
import tomllib
import uuid

import pytest

import conftest
from conftest import ROOT, end_marked, marked_processes


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_every_process_carrying_the_mark_ends_sessions_and_orphans_included():
    """What end_test_processes does after every test: a worker in a session of its own (as runs.launch starts one)
    and the grandchild it leaves behind when it exits (orphaned, out of every process group of ours) both end."""
    marker = f"FTSPACE_TEST_GUARD={uuid.uuid4().hex}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env, start_new_session=True)
    starter = subprocess.run([sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen([sys.executable, "
                              "'-c', 'import time; time.sleep(120)'], start_new_session=True, "
                              "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)"],
                             env=env, capture_output=True, text=True, timeout=60)
    orphan = int(starter.stdout.strip())
    unmarked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        assert set(marked_processes(marker)) == {worker.pid, orphan}
        assert set(end_marked(marker)) == {worker.pid, orphan}
        worker.wait(10)
        deadline = time.time() + 10
        while alive(orphan) and time.time() < deadline:
            time.sleep(0.05)
        assert not alive(orphan) and worker.returncode == -9
        assert alive(unmarked.pid)  # a process without the mark (another test's, the suite's own) is left alone
    finally:
        unmarked.kill()
        unmarked.wait()


def test_tests_are_cut_short_and_the_slowest_are_listed():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert options["timeout"] <= 300  # a hang costs one test, not the CI budget (real-model tests mark more)
    assert "--durations=25" in options["addopts"].split()


def test_a_test_starts_with_its_own_mark_set():
    assert os.environ.get("FTSPACE_TEST_PROCESS") and os.environ.get("FTSPACE_TEST_MODULE")


def test_make_test_runs_two_processes_and_keeps_the_real_model_tests_in_their_units(request):
    """`make test` shares the cores between two test processes, a module each at a time; the real-model tests (the
    `slow` mark) are in the modules that start first, and those sharing the demo's run (`demo_run`) in one module, so
    they run in one process and train the demo once."""
    from conftest import REAL_MODEL_MODULES

    recipe = (ROOT / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "-n 2" in recipe and "--dist loadscope" in recipe, recipe
    module = lambda item: item.nodeid.split("::")[0]  # noqa: E731
    elsewhere = [item.nodeid for item in request.session.items
                 if item.get_closest_marker("slow") and module(item) not in REAL_MODEL_MODULES]
    assert not elsewhere, f"move these into one of {REAL_MODEL_MODULES}: {elsewhere}"
    demo = {module(item) for item in request.session.items if "demo_run" in item.fixturenames}
    assert demo <= {"tests/test_learning.py"}, demo
    if os.environ.get("PYTEST_XDIST_WORKER_COUNT") == "2":  # each process, and all it starts, on half the cores
        assert os.environ["OMP_NUM_THREADS"] == str(max(1, len(os.sched_getaffinity(0)) // 2))


def test_a_worker_forked_by_the_warm_process_ends_with_the_test_that_started_it(tiny_model, runs_dir):
    """Workers forked by the suite's warm process (ftspace.engine.warm) carry no test's mark: the end of a test ends
    the ones forked while it ran, and leaves the warm process itself for the next test."""
    from ftspace.targets import local
    from test_engine import tiny_config, wait_until

    if not conftest.WARM:
        pytest.skip("no warm start on this machine (not a CPU machine, or FTSPACE_WARM_START=0)")
    test = conftest._marking("FTSPACE_TEST_GUARD")
    next(test)  # a test begins
    run, proc = local.start(tiny_config(tiny_model, max_steps=100_000, save_steps=100_000))
    wait_until(lambda: run.status().get("step", 0) >= 1, what="a training step")
    assert proc.pid in conftest.warm_children(), "the run did not start warm"
    with pytest.raises(StopIteration):
        next(test)  # ... and ends
    wait_until(lambda: not alive(proc.pid), timeout=10, what="the worker to end")
    assert all(alive(starter.proc.pid) for starter in conftest.WARM)
