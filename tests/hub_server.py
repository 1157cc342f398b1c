"""A stand-in for the Hugging Face Hub: the part of its HTTP API that ``huggingface_hub`` calls to
create a repo, commit files (all as regular, non-LFS files), read repo info and download files.

Tests point ``HF_ENDPOINT`` at it. Files and commits are kept in memory and read back from
``HubServer.repos``. ``delay`` (seconds) is slept in each commit, to stand for a slow upload.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class Commit:
    oid: str
    message: str
    added: list[str]
    deleted: list[str]


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    commits: dict[str, list[Commit]] = field(default_factory=lambda: {"main": []})
    snapshots: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit oid -> files

    def head(self, branch: str = "main") -> str:
        commits = self.commits.get(branch) or []
        return commits[-1].oid if commits else "0" * 40

    def files_at(self, revision: str) -> dict[str, bytes] | None:
        """Files of a branch or of a commit."""
        if revision in self.branches:
            return self.branches[revision]
        return self.snapshots.get(revision)


class HubServer:
    """``with HubServer(tokens={"tok": "alice"}) as hub: os.environ["HF_ENDPOINT"] = hub.url``"""

    def __init__(self, tokens: dict[str, str], delay: float = 0.0):
        self.tokens = tokens
        self.delay = delay
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Authorization header)
        self.lock = threading.Lock()
        server = self

        class Handler(_Handler):
            hub = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return self.repos[repo_id].branches[branch]


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- plumbing -----------------------------------------------------------------------------
    def _send(self, status: int, body=None, headers: dict | None = None, head: bool = False) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        if not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message}, headers={"X-Error-Message": message})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        return self.hub.tokens.get(token) if token else None

    def _authorized(self) -> str | None:
        user = self._user()
        if user is None:
            self._error(401, "Invalid credentials in Authorization header")
        return user

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._send(404, {"error": "Repository not found"},
                       headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        return repo

    def _record(self) -> None:
        with self.hub.lock:
            self.hub.requests.append((self.command, self.path, self.headers.get("Authorization")))

    # -- routes ---------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._record()
        self._resolve(head=True)

    def do_GET(self) -> None:
        self._record()
        path = unquote(urlparse(self.path).path)
        if path == "/api/whoami-v2":
            user = self._authorized()
            if user:
                self._send(200, {"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token"}})
            return
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path)
        if match:
            return self._model_info(match.group(1), match.group(2) or "main")
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
        if match:
            return self._tree(*match.groups())
        self._resolve(head=False)

    def do_POST(self) -> None:
        self._record()
        path = unquote(urlparse(self.path).path)
        body = self._body()
        if path == "/api/repos/create":
            return self._create_repo(json.loads(body or b"{}"))
        if path == "/api/validate-yaml":
            return self._send(200, {})
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/(.+)", path)
        if match:
            files = json.loads(body)["files"]
            return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                                "oid": None} for f in files]})
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/(.+)", path)
        if match:
            return self._commit(match.group(1), match.group(2), body)
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/branch/(.+)", path)
        if match:
            return self._create_branch(match.group(1), match.group(2))
        self._error(404, f"no route for POST {path}")

    # -- handlers -------------------------------------------------------------------------------
    def _create_repo(self, payload: dict) -> None:
        user = self._authorized()
        if not user:
            return
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        with self.hub.lock:
            if repo_id in self.hub.repos:
                return self._send(409, {"error": "You already created this model repo", "url": url})
            private = payload.get("visibility") == "private" or bool(payload.get("private"))  # newer / older clients
            self.hub.repos[repo_id] = Repo(repo_id, private)
        self._send(200, {"url": url, "name": repo_id, "id": repo_id})

    def _create_branch(self, repo_id: str, branch: str) -> None:
        if not self._authorized():
            return
        repo = self._repo(repo_id)
        if repo is None:
            return
        with self.hub.lock:
            if branch in repo.branches:
                return self._send(409, {"error": "Reference already exists"})
            repo.branches[branch] = dict(repo.branches["main"])
            repo.commits[branch] = list(repo.commits["main"])
        self._send(200, {})

    def _commit(self, repo_id: str, revision: str, body: bytes) -> None:
        user = self._authorized()
        if not user:
            return
        repo = self._repo(repo_id)
        if repo is None:
            return
        if not repo_id.startswith(f"{user}/"):
            return self._error(403, f"You don't have the rights to create a commit in {repo_id}")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        added, deleted, contents = [], [], {}
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                contents[value["path"]] = base64.b64decode(value["content"])
                added.append(value["path"])
            elif line["key"] in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            elif line["key"] == "lfsFile":
                return self._error(400, "the stand-in Hub takes regular files only")
        time.sleep(self.hub.delay)
        branch = revision if revision in repo.branches else None
        if branch is None:
            return self._error(404, f"Invalid rev id: {revision}")
        with self.hub.lock:
            files = repo.branches[branch]
            for path in deleted:
                for name in [n for n in files if n == path or n.startswith(path.rstrip("/") + "/")]:
                    del files[name]
            files.update(contents)
            oid = hashlib.sha1(f"{repo.head(branch)}{header['summary']}{len(repo.commits[branch])}".encode()).hexdigest()
            repo.commits[branch].append(Commit(oid, header["summary"], added, deleted))
            repo.snapshots[oid] = dict(files)
        self._send(200, {"commitUrl": f"{self.hub.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                         "pullRequestUrl": None})

    def _model_info(self, repo_id: str, revision: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        if repo.private and self._user() is None:
            return self._error(401, "Invalid credentials in Authorization header")
        files = repo.files_at(revision)
        if files is None:
            return self._error(404, f"Invalid rev id: {revision}")
        sha = repo.head(revision) if revision in repo.branches else revision
        self._send(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                         "siblings": [{"rfilename": name, "size": len(data)} for name, data in sorted(files.items())],
                         "tags": [], "downloads": 0, "likes": 0})

    def _tree(self, repo_id: str, revision: str, prefix: str | None) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        files = repo.files_at(revision)
        if files is None:
            return self._error(404, f"Invalid rev id: {revision}")
        prefix = (prefix or "").strip("/")
        entries, folders = [], set()
        for name, data in sorted(files.items()):
            if prefix and not name.startswith(prefix + "/"):
                continue
            parts = name.split("/")
            for i in range(1, len(parts)):
                folders.add("/".join(parts[:i]))
            entries.append({"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()})
        entries += [{"type": "directory", "path": f, "oid": "0" * 40} for f in sorted(folders)
                    if not prefix or f.startswith(prefix + "/")]
        self._send(200, entries)

    def _resolve(self, head: bool) -> None:
        path = unquote(urlparse(self.path).path)
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if not match:
            return self._error(404, f"no route for {self.command} {path}")
        repo_id, revision, filename = match.groups()
        repo = self.hub.repos.get(repo_id)
        files = repo.files_at(revision) if repo is not None else None
        if files is None or filename not in files:
            return self._send(404, {"error": "Entry not found"}, headers={"X-Error-Code": "EntryNotFound"},
                              head=head)
        data = files[filename]
        etag = hashlib.sha1(data).hexdigest()
        commit = repo.head(revision) if revision in repo.branches else revision
        self._send(200, data, headers={"ETag": f'"{etag}"', "X-Repo-Commit": commit,
                                       "Content-Type": "application/octet-stream"}, head=head)
