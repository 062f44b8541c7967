"""Who may watch a run's live view, and, when someone may not, why, in words the page can show.

The live socket accepts exactly the pages Streamlit's own socket accepts (its `Host` allow-list,
same origin with the port, its CORS rules), so a proxy recipe that works for Streamlit works
here too: `Host $host` drops the port, and Streamlit then falls back on its allowed hostnames.
`X-Forwarded-Host` counts only when the operator says the proxy is trusted
(DLLAB_TRUSTED_PROXY=1): anyone can send that header otherwise.

Then the token (sent as the socket's first message, so it never lands in a proxy's access log)
must name a live channel, the browser must be the one whose page opened it (its XSRF cookie,
compared in constant time; required whenever XSRF protection is on), and a channel serves at
most a few tabs at once.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from streamlit import config

from server.channel import Channel, owner_of

MAX_TOKEN_CHARS = 64  # tokens are 32 characters; anything longer is not one
MAX_VIEWERS = 4  # tabs watching one run at once (the same page opened twice, a reload)


@dataclass(frozen=True)
class Refusal:
    status: int  # as HTTP would say it: 403, 404, 429
    why: str  # for the page: what is wrong and what would fix it


GONE = Refusal(404, "This run's live view has ended, or this page is out of date: reload the page.")
NOT_YOURS = Refusal(
    403, "This run belongs to another browser: its live view opens only where it was started."
)
TOO_MANY = Refusal(429, f"This run is already shown in {MAX_VIEWERS} tabs: close one and reload this one.")


def trusted_proxy() -> bool:
    return os.environ.get("DLLAB_TRUSTED_PROXY", "0").lower() in ("1", "true", "yes")


def seen_host(headers) -> str | None:
    """The host the browser addressed: the Host header, or the trusted proxy's forwarded one."""
    forwarded = headers.get("x-forwarded-host")
    if forwarded and trusted_proxy():
        return forwarded.split(",")[0].strip()
    return headers.get("host")


def origin_refusal(headers) -> Refusal | None:
    """Refused when Streamlit's own socket would refuse this page (another site's page, or a
    proxy that hides the address the browser used). May look up this machine's addresses:
    call it off the event loop."""
    from streamlit.web.server.starlette.starlette_websocket import _is_origin_allowed

    origin, host = headers.get("origin"), seen_host(headers)
    if _is_origin_allowed(origin, host):
        return None
    return Refusal(
        403,
        f"The server does not recognise this page's address ({origin}) as its own (it sees the "
        f"host {host!r}). Behind a proxy, pass the browser's Host header with its port "
        "(nginx: proxy_set_header Host $http_host), or list the address in the server's "
        "corsAllowedOrigins.",
    )


def channel_refusal(channel: Channel | None, xsrf_cookie: str | None) -> Refusal | None:
    """Refused when the token names no live channel, the browser is not its owner, or the run
    is shown in too many tabs already."""
    if channel is None:
        return GONE
    if config.get_option("server.enableXsrfProtection"):
        browser = owner_of(xsrf_cookie) or ""
        if channel.owner is None or not hmac.compare_digest(browser, channel.owner):
            return NOT_YOURS
    if channel.viewers >= MAX_VIEWERS:
        return TOO_MANY
    return None


def token_from(message: dict) -> str | None:
    """The token in the socket's first message, if that message is one."""
    text = message.get("text")
    if not isinstance(text, str) or not 0 < len(text) <= MAX_TOKEN_CHARS:
        return None
    return text
