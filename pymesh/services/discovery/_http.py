"""What the HTTP strategies (kubernetes, consul, eureka) share: one way to ask and to fail.

Every failure becomes a :class:`~pymesh._errors.DiscoveryError` whose message
names the service and URL and whose ``kind`` says what went wrong in a word
(``"unreachable"``, ``"timeout"``, ``"http 503"``, ``"malformed"``), so that
the topology logs a change of failure, not every repetition of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from pymesh._errors import DiscoveryError

__all__ = ["client", "malformed", "parse", "request_json"]

T = TypeVar("T")

_BODY_EXCERPT = 200


def client(timeout: float, *, verify: Any = True, headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """An httpx client for one strategy: ``timeout`` per request, no proxies from the environment.

    Discovery talks to services on the cluster's own network (the API server,
    the local Consul agent); a proxy configured for the outside world would
    only add a way to fail.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        verify=verify,
        headers=dict(headers or {}),
        trust_env=False,
        follow_redirects=False,
    )


async def request_json(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    service: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    error_message: Callable[[httpx.Response], str] | None = None,
    allow_empty: bool = False,
) -> Any:
    """Send one request and return its decoded JSON body (``None`` for an allowed empty body).

    Raises :class:`DiscoveryError` for transport failures, statuses >= 300
    (message from ``error_message(response)`` if given, else the start of the
    body) and bodies that are not JSON.
    """
    try:
        response = await http.request(method, url, params=params, headers=headers, json=json)
    except httpx.TimeoutException as exc:
        raise DiscoveryError(f"{service}: no answer from {url} in time", kind="timeout") from exc
    except httpx.TransportError as exc:
        raise DiscoveryError(f"{service}: cannot reach {url}: {exc or type(exc).__name__}", kind="unreachable") from exc
    if response.status_code >= 300:
        detail = error_message(response) if error_message else excerpt(response)
        raise DiscoveryError(
            f"{service}: {method} {url} answered {response.status_code}: {detail}",
            kind=f"http {response.status_code}",
        )
    if allow_empty and not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError:
        raise malformed(service, url, "the answer is not JSON") from None


def excerpt(response: httpx.Response) -> str:
    """The start of a response body, on one line."""
    text = " ".join(response.text.split())
    return (text[:_BODY_EXCERPT] + "...") if len(text) > _BODY_EXCERPT else (text or response.reason_phrase)


def malformed(service: str, url: str, why: str) -> DiscoveryError:
    """The error for an answer that is JSON but not of the documented shape."""
    return DiscoveryError(f"{service}: malformed answer from {url}: {why}", kind="malformed")


def parse(fn: Callable[[], T], service: str, url: str) -> T:
    """Run ``fn`` (which digs into a decoded answer); shape errors become a malformed-answer error."""
    try:
        return fn()
    except DiscoveryError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise malformed(service, url, f"{type(exc).__name__}: {exc}") from None
