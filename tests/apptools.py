"""Launch the real app (python app.py) on a free local port for gradio_client and browser tests."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    def __init__(self, tmp: Path, cwd: Path = ROOT, cli: bool = False, **env):
        """cli: started as `ftspace app --port N` (its CLI command) instead of `python app.py`."""
        self.cwd = cwd  # where relative paths typed into the app resolve
        self.cli = cli
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tmp / "app.log"
        self.env = {**os.environ, "GRADIO_SERVER_PORT": str(self.port), "GRADIO_ANALYTICS_ENABLED": "False",
                    "FTSPACE_RUNS": str(tmp / "runs"), "GRADIO_TEMP_DIR": str(tmp / "gradio"), **env}

    def __enter__(self):
        # Its own process group: ZeroGPU's forked GPU workers (daemon children) go down with it.
        command = ([str(Path(sys.executable).with_name("ftspace")), "app", "--port", str(self.port)] if self.cli
                   else [sys.executable, str(ROOT / "app.py")])
        self.proc = subprocess.Popen(command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.time()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url, timeout=2)
                self.ready_s = time.time() - self.started
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("app exited:\n" + self.log.read_text()[-3000:])
                time.sleep(0.2)
        raise RuntimeError("app did not serve within 60 s:\n" + self.log.read_text()[-3000:])

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        try:  # whatever the app forked (training workers have sessions of their own and are not touched)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def alive(self) -> bool:
        return self.proc.poll() is None


def progress(client, run_id: str, browser: str = "") -> str:
    """The Train tab's status line for a run, through the app's API."""
    return client.predict(browser, run_id, api_name="/progress")[0]


def files_containing(secret: str, *roots: Path, since: float | None = None,
                     skip: tuple[str, ...] = (".venv", ".git")) -> list[str]:
    """Every file under `roots` (modified after `since`, if given) whose bytes contain `secret`."""
    needle, found = secret.encode(), []
    for root in roots:
        for path in Path(root).rglob("*"):
            if any(part in skip for part in path.relative_to(root).parts) or not path.is_file():
                continue
            if since is not None and path.stat().st_mtime < since:
                continue
            if needle in path.read_bytes():
                found.append(str(path))
    return found
