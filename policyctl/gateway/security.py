"""Who may talk to the gateway: loopback-only without a token, bearer tokens compared in constant time."""

from __future__ import annotations

import hmac
import ipaddress
import socket
from pathlib import Path

from policyctl.errors import InputError, UsageError

# Paths that stay open with a token set: probes must work without secrets, and the
# OpenAPI document says nothing a client could not learn from the docs.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback address (127.0.0.0/8, ::1)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token: anyone on the network could decide."""
    if token is None and not is_loopback(host):
        raise UsageError(f"--host {host} is not a loopback address: pass --token-file FILE so that "
                         "clients must send `Authorization: Bearer <token>` (or bind 127.0.0.1)")


def load_token(path: Path) -> str:
    """The token in `path` (surrounding whitespace ignored); refuse an empty or short one."""
    try:
        text = path.read_text("utf-8").strip()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the token file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the token file is not UTF-8 text") from exc
    if len(text) < 16:
        raise InputError(f"{path}: the token must be at least 16 characters "
                         "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE`)")
    if any(c.isspace() for c in text):
        raise InputError(f"{path}: the token must be one line without spaces")
    return text


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token`, compared in constant time."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8"), token.encode("utf-8"))
