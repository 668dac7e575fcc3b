"""A fake Hugging Face Hub on 127.0.0.1 that speaks enough of the HTTP API for huggingface_hub:
whoami, repo creation, preupload + commit (regular, base64 files), and file download (HEAD/GET
resolve, model info), and an OpenID Connect provider (Gradio's "Sign in with Hugging Face" on a Space):
discovery, authorize (logs in as `login_as`), token (an access token plus a signed id_token) and jwks.
Repos live in memory. Behaviour switches for error-path tests:
`fail_next` (a status code returned once by the next commit or create), `fail_at` (("/commit/", 500, n)
fails the next n requests whose path contains "/commit/"; ("/commit/", "hang", n) holds them unanswered
for `hang_s` seconds: a Hub that stopped answering part way through), and one valid token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlparse

from localserver import LocalServer


class FakeHub(LocalServer):
    def __init__(self, token: str = "hf_test_token_123456", user: str = "tester"):
        self.token, self.user = token, user
        self.tokens = {token: user}  # every token the Hub accepts -> its user (OAuth logins add theirs)
        # whoami's "auth" for a token, where it is not a user's write access token (an org's, a read or
        # fine-grained one, ...): token -> (account type, auth object)
        self.token_auth: dict[str, tuple[str, dict]] = {}
        self.login_as = user  # who the next OAuth sign-in is
        self.oauth_codes: dict[str, tuple[str, str | None, str]] = {}  # code -> (user, nonce, client_id)
        self.oauth_tokens: list[str] = []
        self._signing_key = None
        self.repos: dict[str, dict] = {}  # repo_id -> {"private": bool, "files": {path: bytes}, "sha": str}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers) for secret checks
        self.bodies: list[bytes] = []
        self.fail_next: int | None = None
        self.fail_at: tuple[str, int | str, int] | None = None
        self.hang_s = 30.0
        # Inference Providers' router (/v1/chat/completions): a function of the messages -> reply text
        self.chat_reply = lambda messages: "[]"
        self.inference_users: list[str] = []  # whose token each inference call carried
        self.jobs = FakeJobs(self)  # Hugging Face Jobs: /api/jobs/...
        self._serve()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.jobs.clean_up()

    def signing_key(self):
        from joserfc.jwk import OctKey

        if self._signing_key is None:
            self._signing_key = OctKey.import_key(secrets.token_bytes(32), {"kid": "fakehub"})
        return self._signing_key

    def id_token(self, user: str, nonce: str | None, client_id: str) -> str:
        from joserfc import jwt

        now = int(time.time())
        claims = {"iss": self.url, "sub": f"id-{user}", "aud": client_id, "iat": now, "exp": now + 3600,
                  "name": user.title(), "preferred_username": user, "profile": f"{self.url}/{user}",
                  "picture": f"{self.url}/avatars/{user}.png"}
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode({"alg": "HS256", "kid": "fakehub"}, claims, self.signing_key())

    def _handler(hub):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=None, content_type="application/json"):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _authed(self) -> str | None:
                """The user the request's token belongs to, if any."""
                auth = self.headers.get("Authorization") or ""
                return hub.tokens.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                hub.bodies.append(data)
                return data

            def _record(self):
                hub.requests.append((self.command, self.path, dict(self.headers)))

            def do_HEAD(self):
                self._record()
                self._resolve()

            def do_GET(self):
                self._record()
                path = urlparse(self.path).path
                if path == "/.well-known/openid-configuration":
                    return self._send(200, {"issuer": hub.url, "authorization_endpoint": hub.url + "/oauth/authorize",
                                            "token_endpoint": hub.url + "/oauth/token",
                                            "userinfo_endpoint": hub.url + "/oauth/userinfo",
                                            "jwks_uri": hub.url + "/oauth/jwks",
                                            "id_token_signing_alg_values_supported": ["HS256"],
                                            "response_types_supported": ["code"]})
                if path == "/oauth/jwks":
                    return self._send(200, {"keys": [hub.signing_key().as_dict(private=True)]})
                if path == "/oauth/authorize":
                    from urllib.parse import parse_qs, urlencode

                    q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                    code = secrets.token_hex(8)
                    hub.oauth_codes[code] = (hub.login_as, q.get("nonce"), q["client_id"])
                    sep = "&" if "?" in q["redirect_uri"] else "?"
                    location = q["redirect_uri"] + sep + urlencode({"code": code, "state": q.get("state", "")})
                    return self._send(302, b"", headers={"Location": location})
                if path.startswith("/api/jobs/"):
                    return hub.jobs.get(self, path)
                if path == "/api/whoami-v2":
                    if not self._authed():
                        return self._send(401, {"error": "Invalid credentials"})
                    token = (self.headers.get("Authorization") or "")[len("Bearer "):]
                    kind, auth = hub.token_auth.get(token, ("user", {"type": "access_token",
                                                                     "accessToken": {"role": "write"}}))
                    return self._send(200, {"name": self._authed(), "type": kind, "auth": auth})
                m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)(?:/revision/[^/]+)?$", path)
                if m:
                    repo = self._repo(m.group(1), m.group(2))
                    if repo is None:
                        return self._not_found()
                    if repo.get("gated") and self._authed() not in repo.get("granted", ()):  # as the Hub answers
                        return self._send(403, {"error": "Access to this dataset is restricted."},
                                          headers={"X-Error-Code": "GatedRepo",
                                                   "X-Error-Message": "Access to this dataset is restricted."})
                    sizes = repo.get("sizes", {})  # declared sizes, for a repo too large to hold here
                    return self._send(200, {"id": m.group(2), "sha": repo["sha"], "private": repo["private"],
                                            "siblings": [{"rfilename": p, "size": sizes.get(p, len(data))}
                                                         for p, data in repo["files"].items()]})
                m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/tree/([^/]+)/?(.*)$", unquote(path))
                if m:
                    repo = self._repo(m.group(1), m.group(2))
                    if repo is None:
                        return self._not_found()
                    return self._send(200, self._entries(repo, m.group(4), recursive="recursive=true" in self.path.lower()))
                return self._resolve()

            def _repo(self, kind, repo_id):
                repo = hub.repos.get(("datasets/" if kind == "datasets" else "") + repo_id)
                if repo is None or (repo["private"] and self._authed() != repo_id.split("/")[0]):
                    return None
                return repo

            def _not_found(self):
                return self._send(404, {"error": "Repository not found"}, headers={"X-Error-Code": "RepoNotFound"})

            def _entries(self, repo, prefix, recursive=True, exact=None):
                prefix = prefix.strip("/")
                out, dirs = [], set()
                for name, data in sorted(repo["files"].items()):
                    if exact is not None:
                        if name in exact:
                            out.append(self._file_entry(name, data))
                        continue
                    if prefix and not name.startswith(prefix + "/"):
                        continue
                    rest = name[len(prefix) + 1:] if prefix else name
                    if "/" in rest and not recursive:
                        dirs.add((prefix + "/" if prefix else "") + rest.split("/")[0])
                        continue
                    out.append(self._file_entry(name, data))
                return [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(dirs)] + out

            @staticmethod
            def _file_entry(name, data):
                return {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}

            def _resolve(self):
                path = unquote(urlparse(self.path).path)
                m = re.match(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if not m:
                    return self._send(404, {"error": "not found"})
                repo = self._repo("datasets" if m.group(1) else "models", m.group(2))
                if repo is None or m.group(4) not in repo["files"]:
                    code = "RepoNotFound" if repo is None else "EntryNotFound"
                    return self._send(404, {"error": code}, headers={"X-Error-Code": code})
                data = repo["files"][m.group(4)]
                return self._send(200, data, content_type="application/octet-stream", headers={
                    "X-Repo-Commit": repo["sha"], "ETag": '"' + hashlib.sha1(data).hexdigest() + '"'})

            def do_POST(self):
                self._record()
                path = urlparse(self.path).path
                body = self._body()
                if path == "/oauth/token":
                    from urllib.parse import parse_qs

                    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                    if form.get("code") not in hub.oauth_codes:
                        return self._send(400, {"error": "invalid_grant"})
                    user, nonce, client_id = hub.oauth_codes.pop(form["code"])
                    token = f"hf_oauth_{user}_{secrets.token_hex(12)}"
                    hub.tokens[token] = user
                    hub.oauth_tokens.append(token)
                    return self._send(200, {"access_token": token, "token_type": "bearer", "expires_in": 28800,
                                            "scope": "openid profile write-repos manage-repos",
                                            "id_token": hub.id_token(user, nonce, client_id)})
                if path == "/v1/chat/completions":  # Inference Providers' OpenAI-compatible router
                    user = self._authed()
                    if user is None:
                        return self._send(401, {"error": "Invalid credentials in Authorization header"})
                    hub.inference_users.append(user)
                    request = json.loads(body)
                    text = hub.chat_reply(request["messages"])
                    return self._send(200, {"id": "x", "object": "chat.completion", "created": 0,
                                            "model": request.get("model", ""),
                                            "choices": [{"index": 0, "finish_reason": "stop",
                                                         "message": {"role": "assistant", "content": text}}],
                                            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
                if path == "/api/validate-yaml":  # the Hub checks a README's front matter before a commit
                    import yaml

                    content = json.loads(body)["content"]
                    try:
                        meta = yaml.safe_load(content.split("---")[1]) if content.startswith("---") else {}
                    except yaml.YAMLError as e:
                        return self._send(400, {"errors": [{"message": str(e)}]})
                    if not isinstance(meta, dict) or not isinstance(meta.get("base_model", ""), str):
                        return self._send(400, {"errors": [{"message": "base_model must be a string"}]})
                    return self._send(200, {"errors": [], "warnings": []})
                m = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)/paths-info/([^/]+)$", path)
                if m:
                    repo = self._repo(m.group(1), m.group(2))
                    if repo is None:
                        return self._not_found()
                    from urllib.parse import parse_qs

                    asked = parse_qs(body.decode()).get("paths") or json.loads(body or b"{}").get("paths", [])
                    return self._send(200, self._entries(repo, "", exact=set(asked)))
                if hub.fail_at and hub.fail_at[0] in path:
                    where, failure, times = hub.fail_at
                    hub.fail_at = (where, failure, times - 1) if times > 1 else None
                    if failure == "hang":
                        time.sleep(hub.hang_s)
                        return self._send(504, {"error": "gateway timeout"})
                    return self._send(failure, {"error": f"injected failure {failure}"})
                if not self._authed():
                    return self._send(401, {"error": "Invalid credentials in Authorization header"})
                if path.startswith("/api/jobs/"):
                    return hub.jobs.post(self, path, body)
                if hub.fail_next:
                    status, hub.fail_next = hub.fail_next, None
                    return self._send(status, {"error": f"injected failure {status}"})
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo_id = f"{req.get('organization') or self._authed()}/{req['name']}"
                    if repo_id.split("/")[0] != self._authed():
                        return self._send(403, {"error": "You don't have the rights to create a model under this namespace"})
                    if repo_id in hub.repos:
                        return self._send(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"})
                    private = req.get("visibility", "private" if req.get("private") else "public") == "private"
                    hub.repos[repo_id] = {"private": private, "files": {}, "sha": "0" * 40}
                    return self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
                m = re.match(r"^/api/models/([^/]+/[^/]+)/preupload/([^/]+)$", path)
                if m:
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                m = re.match(r"^/api/models/([^/]+/[^/]+)/commit/([^/]+)$", path)
                if m:
                    repo = hub.repos.get(m.group(1))
                    if repo is None:
                        return self._send(404, {"error": "Repository not found"})
                    if m.group(1).split("/")[0] != self._authed():
                        return self._send(403, {"error": "You don't have write access to this repo"})
                    if self.headers.get("Content-Encoding") == "gzip":
                        import gzip

                        body = gzip.decompress(body)
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            value = item["value"]
                            repo["files"][value["path"]] = base64.b64decode(value["content"])
                        elif item["key"] == "deletedFile":
                            repo["files"].pop(item["value"]["path"], None)
                        elif item["key"] == "deletedFolder":
                            folder = item["value"]["path"].rstrip("/") + "/"
                            for name in [n for n in repo["files"] if n.startswith(folder)]:
                                del repo["files"][name]
                    repo["sha"] = hashlib.sha1(json.dumps(sorted(repo["files"])).encode() + body).hexdigest()
                    return self._send(200, {"commitUrl": f"{hub.url}/{m.group(1)}/commit/{repo['sha']}",
                                            "commitOid": repo["sha"]})
                return self._send(404, {"error": f"no route {path}"})

        return Handler


class FakeJobs:
    """Hugging Face Jobs on the fake Hub: hardware list, create, inspect, logs (server-sent events), cancel.

    A job runs its command as a local subprocess: `uv run [options] python ...` and `python ...` become this
    Python with the rest of the command, in an empty folder, with the job's environment and secrets, the fake
    Hub as HF_ENDPOINT and no other token. Behaviour switches: `fail_with` ((message, after) kills the next job
    once a line containing `after` appears and ends it ERROR with that message, as the Hub reports an
    out-of-memory kill), `pause_at` (the next job holds still, SIGSTOP, once a line containing it appears, and
    `paused` is set on it: a job caught mid-run, to be cancelled).
    """

    HARDWARE = [
        {"name": "cpu-basic", "prettyName": "CPU Basic", "cpu": "2 vCPU", "ram": "16 GB", "accelerator": None,
         "unitCostMicroUSD": 167, "unitCostUSD": 0.000167, "unitLabel": "minute"},
        {"name": "t4-small", "prettyName": "Nvidia T4 - small", "cpu": "4 vCPU", "ram": "15 GB",
         "accelerator": {"type": "gpu", "model": "T4", "quantity": "1", "vram": "16 GB", "manufacturer": "Nvidia"},
         "unitCostMicroUSD": 6667, "unitCostUSD": 0.006667, "unitLabel": "minute"},
        {"name": "a10g-large", "prettyName": "Nvidia A10G - large", "cpu": "12 vCPU", "ram": "46 GB",
         "accelerator": {"type": "gpu", "model": "A10G", "quantity": "1", "vram": "24 GB", "manufacturer": "Nvidia"},
         "unitCostMicroUSD": 25000, "unitCostUSD": 0.025, "unitLabel": "minute"},
        {"name": "a10g-largex2", "prettyName": "2x Nvidia A10G - large", "cpu": "24 vCPU", "ram": "92 GB",
         "accelerator": {"type": "gpu", "model": "A10G", "quantity": "2", "vram": "48 GB", "manufacturer": "Nvidia"},
         "unitCostMicroUSD": 50000, "unitCostUSD": 0.05, "unitLabel": "minute"},
    ]

    def __init__(self, hub):
        import threading

        self.hub = hub
        self.jobs: dict[str, dict] = {}
        self.workdirs: list[str] = []  # each job's folder, removed when the fake Hub closes
        self.lock = threading.Condition()
        self.fail_with: tuple[str, str] | None = None
        self.pause_at: str | None = None

    # --- the API
    def get(self, handler, path):
        if path == "/api/jobs/hardware":
            return handler._send(200, self.HARDWARE)
        m = re.match(r"^/api/jobs/([^/]+)/([^/]+)(/logs)?$", path)
        user = handler._authed()
        if not m or m.group(2) not in self.jobs or self.jobs[m.group(2)]["owner"]["name"] != user:
            return handler._send(404, {"error": "Job not found"})
        job = self.jobs[m.group(2)]
        if not m.group(3):
            return handler._send(200, self.public(job))
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        sent = 0
        while True:
            with self.lock:
                lines, running = job["lines"][sent:], job["status"]["stage"] in ("SCHEDULING", "RUNNING")
                if not lines and running:
                    self.lock.wait(timeout=1.0)
                    continue
            try:
                for line in lines:
                    handler.wfile.write(b"data: " + json.dumps({"data": line, "timestamp": "2026-12-02T00:00:00Z"})
                                        .encode() + b"\n\n")
                handler.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the follower went away
                return
            sent += len(lines)
            if not running and sent >= len(job["lines"]):
                return

    def post(self, handler, path, body):
        user = handler._authed()
        m = re.match(r"^/api/jobs/([^/]+)/([^/]+)/cancel$", path)
        if m:
            job = self.jobs.get(m.group(2))
            if job is None or job["owner"]["name"] != user:
                return handler._send(404, {"error": "Job not found"})
            self.end(job, "CANCELED", "cancelled by the user")
            return handler._send(200, {})
        m = re.match(r"^/api/jobs/([^/]+)$", path)
        if not m:
            return handler._send(404, {"error": f"no route {path}"})
        if m.group(1) != user:
            return handler._send(403, {"error": f"You cannot run jobs in {m.group(1)}"})
        spec = json.loads(body)
        job = {"id": secrets.token_hex(12), "spec": spec, "owner": {"id": "id-" + user, "name": user, "type": "user"},
               "status": {"stage": "RUNNING", "message": None}, "lines": [], "proc": None, "createdAt": time.time()}
        self.jobs[job["id"]] = job
        self.start(job)
        return handler._send(200, self.public(job))

    @staticmethod
    def public(job):
        spec = job["spec"]
        return {"id": job["id"], "createdAt": "2026-12-02T00:00:00.000Z", "command": spec["command"],
                "arguments": [], "environment": spec.get("environment", {}), "flavor": spec.get("flavor"),
                "labels": spec.get("labels"), "dockerImage": spec.get("dockerImage"), "spaceId": spec.get("spaceId"),
                "secrets": sorted(spec.get("secrets") or {}), "status": dict(job["status"]), "owner": job["owner"]}

    def unpause(self, job):
        """A paused job goes on."""
        import os
        import signal

        job["paused"] = False
        os.killpg(job["proc"].pid, signal.SIGCONT)

    def clean_up(self):
        """Every job's processes ended (their process groups) and every job's folder removed."""
        import os
        import shutil
        import signal

        for job in list(self.jobs.values()):
            proc = job.get("proc")
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
        for folder in self.workdirs:
            shutil.rmtree(folder, ignore_errors=True)

    # --- running a job
    def start(self, job):
        import os
        import subprocess
        import sys
        import tempfile
        import threading

        command = list(job["spec"]["command"])
        if command[0] == "uv":
            command = command[command.index("python"):]
        if command[0] != "python":
            job["status"] = {"stage": "ERROR", "message": f"fake Jobs runs python commands only, not {command[0]}"}
            return
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "PYTHONPATH", "FTSPACE_RUNS")}
        env.update(job["spec"].get("environment") or {}, **(job["spec"].get("secrets") or {}))
        env.update(HF_ENDPOINT=self.hub.url, HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0", PYTHONUNBUFFERED="1")
        job["workdir"] = tempfile.mkdtemp(prefix="fakejob-")
        self.workdirs.append(job["workdir"])
        env["HF_HOME"] = os.path.join(job["workdir"], "hf")
        env["TMPDIR"] = job["workdir"]  # the job's own scratch folder (ftspace-job-*) inside it, removed with it
        job["proc"] = subprocess.Popen([sys.executable, *command[1:]], cwd=job["workdir"], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       text=True, start_new_session=True)
        threading.Thread(target=self.read, args=(job,), daemon=True).start()
        timeout = job["spec"].get("timeoutSeconds")
        if timeout:
            timer = threading.Timer(timeout, self.end, args=(job, "ERROR", "Job timeout"))
            timer.daemon = True
            timer.start()

    def read(self, job):
        for line in job["proc"].stdout:
            with self.lock:
                job["lines"].append(line.rstrip("\n"))
                self.lock.notify_all()
            if self.fail_with and self.fail_with[1] in line:
                message, self.fail_with = self.fail_with[0], None
                self.end(job, "ERROR", message)
            if self.pause_at and self.pause_at in line:  # the job holds still here until it is cancelled
                import os
                import signal

                self.pause_at, job["paused"] = None, True
                os.killpg(job["proc"].pid, signal.SIGSTOP)
        code = job["proc"].wait()
        self.end(job, "COMPLETED" if code == 0 else "ERROR", None if code == 0 else f"Job failed with exit code: {code}")

    def end(self, job, stage, message):
        import os
        import signal

        with self.lock:
            if job["status"]["stage"] not in ("SCHEDULING", "RUNNING"):
                return
            job["status"] = {"stage": stage, "message": message}
            self.lock.notify_all()
        if job["proc"] is not None and job["proc"].poll() is None:
            try:
                os.killpg(job["proc"].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
