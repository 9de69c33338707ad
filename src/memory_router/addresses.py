"""Network addresses as the router reads them: Ollama's ``OLLAMA_HOST`` forms, and whether an
address is this machine."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["is_loopback_url", "normalize_ollama_url"]


def normalize_ollama_url(value: str) -> str:
    """Read an address the way Ollama reads ``OLLAMA_HOST``.

    "host", "host:port", "[::1]:port" and URLs; no scheme means http and port 11434, while an
    explicit ``http://`` or ``https://`` without a port means 80 or 443, as in Ollama.
    The bind-everywhere addresses 0.0.0.0 and [::] become loopback, since we connect.
    """
    text = value.strip().rstrip("/")
    if not text:
        raise ValueError("empty Ollama address")
    scheme, sep, rest = text.partition("://")
    default_port = "11434"
    if not sep:
        scheme, rest = "http", text
    elif scheme in ("http", "https"):
        default_port = "80" if scheme == "http" else "443"
    else:
        raise ValueError(f"unsupported scheme {scheme!r}: use http:// or https://")
    hostport, slash, path = rest.partition("/")
    path = slash + path
    if hostport.startswith("["):
        host, _, after = hostport.partition("]")
        host += "]"
        port = after.removeprefix(":")
    else:
        host, _, port = hostport.partition(":")
    host = host or "127.0.0.1"
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    if port and not port.isdigit():
        raise ValueError(f"port {port!r} is not a number")
    return f"{scheme}://{host}:{port or default_port}{path}"


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine (127.0.0.0/8, ::1, localhost, 0.0.0.0)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "0.0.0.0", "::") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
