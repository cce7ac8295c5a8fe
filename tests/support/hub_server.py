"""A local HTTP server standing in for the Hugging Face Hub (tests point HF_ENDPOINT at it).

It answers the three requests ``huggingface_hub`` makes to list and fetch weights:
``GET /api/models/{repo}[/revision/{rev}]`` (files with sizes, licence, gating),
``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` (etag, commit and size headers, then the
bytes). LFS-sized files get a SHA-256 etag, small ones a git blob SHA-1, as on the Hub.
A gated repository answers 401 with ``X-Error-Code: GatedRepo`` unless the request
carries its token. ``delay`` slows each file down (cancel tests).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

#: Files at least this large are "LFS" files (SHA-256 etag), as on the Hub.
LFS_MIN = 1024
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeRepo:
    """A repository: its files, licence and, when gated, the token it wants."""

    files: dict[str, bytes]
    license: str | None = "apache-2.0"
    token: str | None = None
    delay: float = 0.0

    def etag(self, name: str) -> str:
        data = self.files[name]
        if len(data) >= LFS_MIN:
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()  # noqa: S324


@dataclass
class FakeHub:
    """The server; use as a context manager. ``url`` goes into HF_ENDPOINT."""

    repos: dict[str, FakeRepo]
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server API
                hub._serve(self, body=False)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                hub._serve(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- answers ---------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append((h.command, path))
        if path.startswith("/api/models/"):
            self._info(h, path.removeprefix("/api/models/"))
        elif "/resolve/" in path:
            repo_id, _, rest = path.lstrip("/").partition("/resolve/")
            _, _, name = rest.partition("/")
            self._file(h, repo_id, name, body)
        else:
            self._error(h, 404, "EntryNotFound")

    def _repo(self, h: BaseHTTPRequestHandler, repo_id: str) -> FakeRepo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(h, 404, "RepoNotFound")
            return None
        if repo.token and h.headers.get("Authorization") != f"Bearer {repo.token}":
            self._error(h, 401, "GatedRepo")
            return None
        return repo

    def _info(self, h: BaseHTTPRequestHandler, rest: str) -> None:
        repo_id = rest.split("/revision/")[0]
        repo = self._repo(h, repo_id)
        if repo is None:
            return
        siblings = [
            {"rfilename": n, "size": len(d),
             **({"lfs": {"sha256": repo.etag(n), "size": len(d), "pointerSize": 130}}
                if len(d) >= LFS_MIN else {})}
            for n, d in repo.files.items()
        ]
        info = {"id": repo_id, "sha": COMMIT, "siblings": siblings, "tags": [],
                "gated": "manual" if repo.token else False,
                "cardData": {"license": repo.license} if repo.license else {}}
        self._send(h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"})

    def _file(self, h: BaseHTTPRequestHandler, repo_id: str, name: str, body: bool) -> None:
        repo = self._repo(h, repo_id)
        if repo is None:
            return
        if name not in repo.files:
            self._error(h, 404, "EntryNotFound")
            return
        data = repo.files[name]
        start = 0
        rng = h.headers.get("Range", "")
        if rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
        headers = {
            "X-Repo-Commit": COMMIT,
            "ETag": f'"{repo.etag(name)}"',
            "Content-Length": str(len(data) - start),
            "Content-Type": "application/octet-stream",
        }
        if body and repo.delay:
            time.sleep(repo.delay)
        self._send(h, 206 if start else 200, data[start:] if body else b"", headers,
                   length_given=True)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str) -> None:
        self._send(h, status, json.dumps({"error": code}).encode(),
                   {"X-Error-Code": code, "Content-Type": "application/json"})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str],
              length_given: bool = False) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if not length_given:
            h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if data:
            h.wfile.write(data)
