"""The GitHub forge: pull requests and commit statuses over GitHub's REST API (httpx); branches on a git remote.

The only module of the bot that talks to GitHub: httpx errors and GitHub's error answers
become ForgeError messages that say what to fix (401: the token; 403/429: the rate
limit and when it resets; 422: GitHub's own validation message). The token comes from
GITHUB_TOKEN and the API from GITHUB_API_URL (default https://api.github.com), so tests
point it at a server on 127.0.0.1.

A commit status (`POST /repos/{o}/{r}/statuses/{sha}`, context `policyctl/shadow`) is
the check a pull request carries even when it was opened with the workflow's own
GITHUB_TOKEN, whose pull requests trigger no other workflow (so CI does not run).

Git over HTTPS gets the same token for the one fetch or push that needs it, as an
`http.<server>/.extraheader` passed through GIT_CONFIG_* environment variables: it is
never written to .git/config (the workflow checks out with persist-credentials: false).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from policyctl import __version__
from policyctl import repo as gitrepo
from policyctl.bot.forge import (
    BRANCH_PREFIX,
    STATUS_CONTEXT,
    CommitStatus,
    ForgeConfig,
    ForgeError,
    PullRequest,
    check_status,
)

DEFAULT_API = "https://api.github.com"
MAX_WAIT = 60.0  # a rate limit that lifts within this many seconds is waited out, once
PER_PAGE = 100
MAX_PAGES = 50
WRITE_PERMISSIONS = "contents: write and pull-requests: write"


class GitHubForge:
    """Pull requests on github.com (or GitHub Enterprise); branches pushed to `remote`."""

    name = "github"

    def __init__(self, repo: Path, *, slug: str, token: str, api_url: str = DEFAULT_API, remote: str = "origin",
                 server_url: str = "https://github.com", client: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 max_wait: float = MAX_WAIT) -> None:
        if slug.count("/") != 1 or not all(slug.split("/")):
            raise ForgeError(f"--github-repo {slug!r}: expected OWNER/NAME")
        self.repo = Path(repo)
        self.slug = slug
        self.owner = slug.split("/")[0]
        self.token = token
        self.api_url = api_url.rstrip("/")
        self.remote = remote
        self.server_url = server_url.rstrip("/")
        self.client = client or httpx.Client(timeout=30.0)
        self.sleep = sleep
        self.clock = clock
        self.max_wait = max_wait

    @classmethod
    def from_config(cls, repo: Path, config: ForgeConfig) -> GitHubForge:
        token = config.token or os.environ.get("GITHUB_TOKEN")
        if not token:
            raise ForgeError("the github forge needs a token: set GITHUB_TOKEN (in a workflow: "
                             "`env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}`)")
        slug = config.github_repo or os.environ.get("GITHUB_REPOSITORY")
        if not slug:
            raise ForgeError("which GitHub repository? pass --github-repo OWNER/NAME or set GITHUB_REPOSITORY")
        return cls(repo, slug=slug, token=token, api_url=config.api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API,
                   remote=config.remote, server_url=os.environ.get("GITHUB_SERVER_URL") or "https://github.com")

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, *, what: str, params: Mapping[str, Any] | None = None,
                 json: Any = None, needs: str = WRITE_PERMISSIONS) -> Any:
        url = f"{self.api_url}{path}"
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28", "User-Agent": f"policyctl/{__version__}"}
        for attempt in (0, 1):
            try:
                resp = self.client.request(method, url, params=params, json=json, headers=headers)
            except httpx.HTTPError as exc:
                raise ForgeError(f"cannot reach the GitHub API at {self.api_url} to {what}: {exc} "
                                 "(check GITHUB_API_URL and the network)") from exc
            if resp.status_code < 400:
                return resp.json() if resp.content else None
            wait = self._rate_limit_wait(resp)
            if wait is not None and attempt == 0 and wait <= self.max_wait:
                self.sleep(max(wait, 0.0))
                continue
            raise self._error(resp, method, path, what, wait, needs)
        raise AssertionError("unreachable")  # pragma: no cover

    def _rate_limit_wait(self, resp: httpx.Response) -> float | None:
        """Seconds until a rate limit lifts, or None when the answer is not a rate limit."""
        if resp.status_code not in (403, 429):
            return None
        retry_after = resp.headers.get("retry-after")
        if retry_after is not None:
            try:
                return float(retry_after)
            except ValueError:
                return self.max_wait + 1
        if resp.headers.get("x-ratelimit-remaining") == "0":
            try:
                return float(resp.headers.get("x-ratelimit-reset", "")) - self.clock() + 1
            except ValueError:
                return self.max_wait + 1
        if resp.status_code == 429 or "rate limit" in _message(resp).lower():
            return 60.0  # GitHub's advice for a secondary limit without headers: wait at least a minute
        return None

    def _error(self, resp: httpx.Response, method: str, path: str, what: str, wait: float | None,
               needs: str = WRITE_PERMISSIONS) -> ForgeError:
        status = resp.status_code
        message = _message(resp)
        where = f"{method} {path}"
        if status == 401:
            return ForgeError(f"GitHub rejected the token (401 {message or 'Bad credentials'}) to {what} ({where}): "
                              f"set GITHUB_TOKEN to a valid token with {needs}")
        if wait is not None:
            when = datetime.fromtimestamp(self.clock() + wait, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            remaining = resp.headers.get("x-ratelimit-remaining")
            limit = resp.headers.get("x-ratelimit-limit")
            quota = f"; {remaining} of {limit} requests left" if remaining is not None and limit else ""
            return ForgeError(f"GitHub's rate limit stopped the bot ({status}: {message or 'rate limited'}{quota}) "
                              f"while trying to {what}; it lifts at {when} (in {_duration(wait)}); run again then")
        if status == 403:
            return ForgeError(f"GitHub refused to {what} (403 {message}) ({where}): the token needs "
                              f"{needs} on {self.slug} (in a workflow: `permissions:`)")
        if status == 404:
            return ForgeError(f"GitHub has no {where} (404 {message}): check --github-repo {self.slug} and that the "
                              "token can see that repository")
        if status == 422:
            return ForgeError(f"GitHub could not {what} (422 {message or 'Validation Failed'}): "
                              f"{_validation(resp) or 'no details given'}")
        return ForgeError(f"GitHub answered {status} {message} to {where} while trying to {what}")

    def _pages(self, path: str, *, what: str, params: Mapping[str, Any],
               needs: str = WRITE_PERMISSIONS) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            batch = self._request("GET", path, what=what, params={**params, "per_page": PER_PAGE, "page": page},
                                  needs=needs)
            if not isinstance(batch, list):
                raise ForgeError(f"GitHub answered GET {path} with {type(batch).__name__}, not a list")
            out.extend(batch)
            if len(batch) < PER_PAGE:
                break
        return out

    # ------------------------------------------------------------------ git

    def _git_env(self) -> dict[str, str]:
        """The token for git over HTTPS to this GitHub server, for one command, never stored."""
        if not self.token:
            return {}
        n = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
        basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        return {"GIT_CONFIG_COUNT": str(n + 1), f"GIT_CONFIG_KEY_{n}": f"http.{self.server_url}/.extraheader",
                f"GIT_CONFIG_VALUE_{n}": f"AUTHORIZATION: basic {basic}", "GIT_TERMINAL_PROMPT": "0"}

    def base_ref(self, base: str) -> str:
        ref = f"refs/policyctl/remote/{base}"
        if gitrepo.fetch_branch(self.repo, self.remote, base, into=ref, env=self._git_env()) is None:
            raise ForgeError(f"the remote {self.remote} has no branch {base!r}; pass --base")
        return ref

    def branch_tip(self, branch: str) -> str | None:
        return gitrepo.fetch_branch(self.repo, self.remote, branch, into=f"refs/policyctl/remote/{branch}",
                                    env=self._git_env())

    def push_branch(self, branch: str, sha: str, expected: str | None) -> None:
        gitrepo.push_branch(self.repo, self.remote, sha, branch, expected=expected, env=self._git_env())

    # ------------------------------------------------------------------ pull requests

    def _pr(self, data: dict[str, Any]) -> PullRequest:
        return PullRequest(number=int(data["number"]), title=str(data.get("title") or ""),
                           body=str(data.get("body") or ""), head=str((data.get("head") or {}).get("ref", "")),
                           base=str((data.get("base") or {}).get("ref", "")), state=str(data.get("state", "open")),
                           merged=bool(data.get("merged_at") or data.get("merged")),
                           labels=[str(lb.get("name")) for lb in data.get("labels") or [] if isinstance(lb, dict)],
                           url=str(data.get("html_url") or ""))

    def find_pr(self, head: str) -> PullRequest | None:
        found = self._pages(f"/repos/{self.slug}/pulls", what=f"find the pull request for {head}",
                            params={"head": f"{self.owner}:{head}", "state": "all"})
        mine = [p for p in found if (p.get("head") or {}).get("ref") == head]
        if not mine:
            return None
        open_ = [p for p in mine if p.get("state") == "open"]
        return self._pr(max(open_ or mine, key=lambda p: int(p["number"])))

    def create_pr(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        data = self._request("POST", f"/repos/{self.slug}/pulls", what=f"open a pull request from {head}",
                             json={"title": title, "head": head, "base": base, "body": body})
        return self._pr(data)

    def update_pr(self, number: int, *, title: str | None = None, body: str | None = None) -> PullRequest:
        patch = {k: v for k, v in (("title", title), ("body", body)) if v is not None}
        data = self._request("PATCH", f"/repos/{self.slug}/pulls/{number}", what=f"update pull request #{number}",
                             json=patch)
        return self._pr(data)

    def add_labels(self, number: int, labels: list[str]) -> None:
        if labels:
            self._request("POST", f"/repos/{self.slug}/issues/{number}/labels",
                          what=f"label pull request #{number}", json={"labels": labels})

    def comment(self, number: int, body: str) -> None:
        self._request("POST", f"/repos/{self.slug}/issues/{number}/comments",
                      what=f"comment on pull request #{number}", json={"body": body})

    def comments(self, number: int) -> list[str]:
        found = self._pages(f"/repos/{self.slug}/issues/{number}/comments",
                            what=f"read the comments of pull request #{number}", params={})
        return [str(c.get("body") or "") for c in found]

    def open_bot_prs(self, prefix: str = BRANCH_PREFIX) -> list[PullRequest]:
        found = self._pages(f"/repos/{self.slug}/pulls", what="list open pull requests", params={"state": "open"})
        return [self._pr(p) for p in found if str((p.get("head") or {}).get("ref", "")).startswith(prefix)]

    # ------------------------------------------------------------------ commit statuses

    def set_status(self, sha: str, *, state: str, description: str, context: str = STATUS_CONTEXT,
                   target_url: str = "") -> None:
        payload = {"state": state, "description": check_status(state, description), "context": context}
        if target_url:
            payload["target_url"] = target_url
        self._request("POST", f"/repos/{self.slug}/statuses/{sha}", what=f"set the {context} status on {sha[:12]}",
                      json=payload, needs="statuses: write")

    def statuses(self, sha: str) -> list[CommitStatus]:
        """The statuses set on commit `sha`, newest first (`GET /repos/{o}/{r}/commits/{ref}/statuses`)."""
        found = self._pages(f"/repos/{self.slug}/commits/{sha}/statuses", what=f"read the statuses of {sha[:12]}",
                            params={}, needs="statuses: read")
        return [CommitStatus(state=str(st.get("state") or ""), context=str(st.get("context") or "default"),
                             description=str(st.get("description") or ""), target_url=str(st.get("target_url") or ""),
                             created_at=str(st.get("created_at") or "")) for st in found]


def _message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:200]
    return str(data.get("message", "")) if isinstance(data, dict) else ""


def _validation(resp: httpx.Response) -> str:
    """GitHub's `errors` list of a 422, as one line: `PullRequest.head: invalid; A pull request already exists`."""
    try:
        data = resp.json()
    except ValueError:
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    parts = []
    for e in errors or []:
        if isinstance(e, str):
            parts.append(e)
        elif isinstance(e, dict):
            if e.get("message"):
                parts.append(str(e["message"]))
            else:
                field = ".".join(str(x) for x in (e.get("resource"), e.get("field")) if x)
                parts.append(f"{field}: {e.get('code', 'invalid')}")
    return "; ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
