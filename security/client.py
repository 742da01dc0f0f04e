"""Who is asking, for rate limits and login throttling: the socket peer, or the address a trusted proxy recorded.

`X-Forwarded-For` is written by whoever sends the request, so it is only believed when the app is configured to sit
behind `proxy_hops` proxies (BEHIND_PROXY / --behind-proxy; 1 on a Hugging Face Space). Each proxy appends the
address it saw, so the client is the entry the outermost trusted proxy appended: the `proxy_hops`-th from the right.
Everything to its left was supplied by the client and is ignored.
"""

from __future__ import annotations


def _forwarded_entries(headers) -> list[str]:
    if headers is None:
        return []
    if hasattr(headers, "getlist"):
        values = headers.getlist("x-forwarded-for")
    else:
        v = headers.get("x-forwarded-for") if hasattr(headers, "get") else None
        values = [v] if v else []
    return [e.strip() for v in values for e in v.split(",") if e.strip()]


def client_address(request, proxy_hops: int = 0) -> str:
    """The caller's address; 'unknown' when the request carries none (such callers share one bucket)."""
    if request is None:
        return "unknown"
    peer = getattr(getattr(request, "client", None), "host", None) or "unknown"
    if proxy_hops <= 0:
        return peer
    entries = _forwarded_entries(getattr(request, "headers", None))
    if len(entries) < proxy_hops:
        return peer  # the request did not come through the whole proxy chain
    return entries[-proxy_hops]
