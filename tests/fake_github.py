"""A small GitHub on 127.0.0.1: the REST endpoints the bot uses, answering with GitHub's JSON shapes.

Pull requests, labels, comments and commit statuses live in memory; head branches and
the commits a status is set on are checked against a real bare git repository (the
remote the bot pushes to), as GitHub checks its own.
Errors are GitHub's: 401 `Bad credentials`, 422 `Validation Failed` with an `errors`
list, and any answer can be scripted (`fake.script(...)`) to produce a rate limit.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DOCS = "https://docs.github.com/rest"


@dataclass
class Scripted:
    """An answer given instead of the real one, to the next request matching `method` and `path_part`."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    method: str | None = None
    path_part: str = ""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str


class FakeGitHub:
    """The in-memory state and the server; use as a context manager."""

    def __init__(self, *, owner: str = "acme", name: str = "policies", token: str = "test-token",
                 remote: Path | None = None) -> None:
        self.owner, self.name, self.token, self.remote = owner, name, token, remote
        self.pulls: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.statuses: dict[str, list[dict[str, Any]]] = {}  # commit -> statuses, oldest first
        self.requests: list[Request] = []
        self.scripted: list[Scripted] = []
        self._next = 1
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body, headers = fake.handle(self.command, self.path, raw,
                                                    self.headers.get("Authorization", ""))
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _serve  # noqa: N815 - http.server's names

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ test helpers

    def script(self, status: int, body: Any, headers: dict[str, str] | None = None, *, method: str | None = None,
               path_part: str = "") -> None:
        self.scripted.append(Scripted(status, body, headers or {}, method, path_part))

    def close(self, number: int) -> None:
        """A reviewer closes the pull request without merging."""
        self.pulls[number].update(state="closed", closed_at=_now(), merged_at=None)

    def merge(self, number: int) -> None:
        self.pulls[number].update(state="closed", closed_at=_now(), merged_at=_now(), merged=True)

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    # ------------------------------------------------------------------ the API

    def handle(self, method: str, raw_path: str, raw: bytes, authorization: str) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, {"message": "Problems parsing JSON", "documentation_url": DOCS}, {}
        with self._lock:
            self.requests.append(Request(method, parts.path, query, body, authorization))
            headers = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999",
                       "x-ratelimit-reset": str(int(time.time()) + 3600), "x-github-api-version-selected": "2022-11-28"}
            for i, s in enumerate(self.scripted):
                if (s.method is None or s.method == method) and s.path_part in parts.path:
                    del self.scripted[i]
                    return s.status, s.body, {**headers, **s.headers}
            if authorization not in (f"Bearer {self.token}", f"token {self.token}"):
                return 401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}, headers
            status, answer = self._route(method, parts.path, query, body)
            return status, answer, headers

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        prefix = f"/repos/{self.owner}/{self.name}"
        if not path.startswith(prefix + "/"):
            return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
        rest = path[len(prefix):].strip("/").split("/")
        if rest == ["pulls"] and method == "GET":
            return 200, self._page(self._list(query), query)
        if rest == ["pulls"] and method == "POST":
            return self._create(body or {})
        if len(rest) == 2 and rest[0] == "pulls" and rest[1].isdigit():
            pr = self.pulls.get(int(rest[1]))
            if pr is None:
                return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
            if method == "GET":
                return 200, pr
            if method == "PATCH":
                for key in ("title", "body"):
                    if key in (body or {}):
                        pr[key] = body[key]
                if (body or {}).get("state") in ("open", "closed"):
                    pr["state"] = body["state"]
                pr["updated_at"] = _now()
                return 200, pr
        if len(rest) == 2 and rest[0] == "statuses" and method == "POST":
            return self._set_status(rest[1], body or {})
        if len(rest) >= 3 and rest[0] == "commits" and rest[-1] in ("statuses", "status") and method == "GET":
            ref = "/".join(rest[1:-1])  # a sha, or a branch name, which may hold slashes
            sha = self._commit_sha(ref)
            if sha is None:
                return 422, {"message": f"No commit found for SHA: {ref}", "documentation_url": DOCS,
                             "status": "422"}
            if rest[-1] == "status":
                return 200, self._combined(sha)
            return 200, self._page(list(reversed(self.statuses.get(sha, []))), query)  # newest first
        if len(rest) == 3 and rest[0] == "issues" and rest[1].isdigit():
            number = int(rest[1])
            if number not in self.pulls:
                return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}
            if rest[2] == "labels" and method == "POST":
                labels = (body or {}).get("labels")
                if not isinstance(labels, list):
                    return 422, {"message": "Invalid request.\n\nFor 'links/0/schema', nil is not an array.",
                                 "documentation_url": DOCS, "status": "422"}
                have = self.pulls[number]["labels"]
                for name in labels:
                    if name not in [lb["name"] for lb in have]:
                        have.append({"id": len(have) + 1, "name": name, "color": "ededed", "default": False})
                return 200, have
            if rest[2] == "comments" and method == "POST":
                comment = {"id": sum(len(c) for c in self.comments.values()) + 1, "body": (body or {}).get("body", ""),
                           "user": {"login": "github-actions[bot]", "type": "Bot"}, "created_at": _now()}
                self.comments.setdefault(number, []).append(comment)
                return 201, comment
            if rest[2] == "comments" and method == "GET":
                return 200, self._page(self.comments.get(number, []), query)
        return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}

    def _list(self, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        out = [p for _, p in sorted(self.pulls.items(), reverse=True)]  # newest first, as GitHub does
        if state != "all":
            out = [p for p in out if p["state"] == state]
        if "head" in query:
            out = [p for p in out if p["head"]["label"] == query["head"]]
        return out

    @staticmethod
    def _page(items: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
        per_page = min(int(query.get("per_page", 30)), 100)
        page = int(query.get("page", 1))
        return items[(page - 1) * per_page: page * per_page]

    def _branch_sha(self, branch: str) -> str | None:
        if self.remote is None:
            return "0" * 40
        done = subprocess.run(["git", "--git-dir", str(self.remote), "rev-parse", "--verify", "--quiet",
                               f"refs/heads/{branch}"], capture_output=True, text=True)
        return done.stdout.strip() or None

    def _commit_sha(self, ref: str) -> str | None:
        """The commit a sha or branch names on the remote, as GitHub resolves `{ref}`."""
        if self.remote is None:
            return ref if len(ref) == 40 else None
        done = subprocess.run(["git", "--git-dir", str(self.remote), "rev-parse", "--verify", "--quiet",
                               f"{ref}^{{commit}}"], capture_output=True, text=True)
        return done.stdout.strip() or None

    def _set_status(self, sha: str, body: dict[str, Any]) -> tuple[int, Any]:
        """`POST /repos/{owner}/{repo}/statuses/{sha}`: GitHub wants a full commit id it has."""
        full = self._commit_sha(sha) if len(sha) == 40 else None
        if full is None:
            return 422, {"message": f"No commit found for SHA: {sha}", "documentation_url": DOCS, "status": "422"}
        errors = []
        if body.get("state") not in ("error", "failure", "pending", "success"):
            errors.append({"resource": "Status", "code": "custom", "field": "state",
                           "message": "state is not included in the list"})
        if len(str(body.get("description") or "")) > 140:
            errors.append({"resource": "Status", "code": "custom", "field": "description",
                           "message": "description is too long (maximum is 140 characters)"})
        if errors:
            return 422, {"message": "Validation Failed", "documentation_url": DOCS, "status": "422", "errors": errors}
        now = _now()
        number = sum(len(v) for v in self.statuses.values()) + 1
        status = {"url": f"{self.url}/repos/{self.owner}/{self.name}/statuses/{full}", "id": number,
                  "node_id": f"SC_{number}", "state": body["state"], "description": body.get("description"),
                  "target_url": body.get("target_url"), "context": body.get("context") or "default",
                  "created_at": now, "updated_at": now,
                  "creator": {"login": "github-actions[bot]", "type": "Bot"}}
        self.statuses.setdefault(full, []).append(status)
        return 201, status

    def _combined(self, sha: str) -> dict[str, Any]:
        """`GET /repos/{owner}/{repo}/commits/{ref}/status`: the latest status per context, and their sum."""
        latest: dict[str, dict[str, Any]] = {}
        for status in self.statuses.get(sha, []):
            latest[status["context"]] = status
        states = {s["state"] for s in latest.values()}
        state = ("failure" if states & {"failure", "error"} else "pending" if "pending" in states or not states
                 else "success")
        return {"state": state, "statuses": sorted(latest.values(), key=lambda s: s["context"]), "sha": sha,
                "total_count": len(latest),
                "repository": {"full_name": f"{self.owner}/{self.name}"}}

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        missing = [k for k in ("title", "head", "base") if not body.get(k)]
        if missing:
            return 422, {"message": "Validation Failed", "documentation_url": DOCS, "status": "422",
                         "errors": [{"resource": "PullRequest", "field": k, "code": "missing_field"} for k in missing]}
        head, base = str(body["head"]), str(body["base"])
        head_sha, base_sha = self._branch_sha(head), self._branch_sha(base)
        errors = []
        if head_sha is None:
            errors.append({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if base_sha is None:
            errors.append({"resource": "PullRequest", "field": "base", "code": "invalid"})
        if any(p["head"]["ref"] == head and p["state"] == "open" for p in self.pulls.values()):
            errors.append({"resource": "PullRequest", "code": "custom",
                           "message": f"A pull request already exists for {self.owner}:{head}."})
        if errors:
            return 422, {"message": "Validation Failed", "documentation_url": DOCS, "status": "422", "errors": errors}
        number = self._next
        self._next += 1
        repo = {"id": 1, "name": self.name, "full_name": f"{self.owner}/{self.name}",
                "owner": {"login": self.owner, "type": "Organization"}}
        now = _now()
        self.pulls[number] = {
            "url": f"{self.url}/repos/{self.owner}/{self.name}/pulls/{number}", "id": 1000 + number,
            "number": number, "html_url": f"https://github.com/{self.owner}/{self.name}/pull/{number}",
            "state": "open", "locked": False, "title": body["title"], "body": body.get("body"),
            "user": {"login": "github-actions[bot]", "type": "Bot"}, "labels": [], "draft": bool(body.get("draft")),
            "head": {"label": f"{self.owner}:{head}", "ref": head, "sha": head_sha, "repo": repo},
            "base": {"label": f"{self.owner}:{base}", "ref": base, "sha": base_sha, "repo": repo},
            "created_at": now, "updated_at": now, "closed_at": None, "merged_at": None, "merge_commit_sha": None,
        }
        return 201, self.pulls[number]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextmanager
def fake_github(**kwargs: Any) -> Iterator[FakeGitHub]:
    with FakeGitHub(**kwargs) as fake:
        yield fake
