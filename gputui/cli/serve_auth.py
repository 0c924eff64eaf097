"""Who may use `gputui serve`: one gate in front of every route textual-serve answers.

textual-serve has no authentication of its own, and the app it serves operates the fleet (marks
nodes failed, runs actions). The gate answers 403 and nothing of the app to:
- without `--public` (a loopback bind), a Host header that is not a loopback name: a web page
  can reach 127.0.0.1 from the operator's own browser through a name of its own that resolves
  there (DNS rebinding), and its Host header gives it away;
- with `--public`, a request without the access token, given as `?token=` (the address printed
  at start) or by the cookie the page's response sets: textual.js opens its websocket at a
  fixed path with a query of its own, so the browser's cookie is what carries the token there;
- a websocket opened by a page of another origin: browsers let any page open a websocket to
  any address, and send it the cookie too.

Imported by `gputui serve` only: aiohttp and textual-serve load when the server starts.
"""

from __future__ import annotations

import asyncio
import contextvars
import secrets

import msgspec
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from textual_serve.server import Server
from yarl import URL

from gputui.cli.listen import is_loopback

TOKEN_PARAM = "token"

# The origin (scheme, host, port) the browser asked for, while its request is handled.
_page_origin: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gputui_page_origin", default=None
)


def new_token() -> str:
    """A fresh access token: 32 URL-safe characters, 192 random bits."""
    return secrets.token_urlsafe(24)


class Gate(msgspec.Struct, frozen=True):
    """The checks on every request. `token` None: loopback only, no token asked."""

    token: str | None
    port: int

    @property
    def cookie(self) -> str:
        """The cookie's name. Browsers keep cookies per host name, not per port: two servers on
        one machine (a demo and the fleet) each keep their own."""
        return f"gputui_token_{self.port}"

    def refusal(self, request: web.BaseRequest) -> str | None:
        """Why `request` is refused, or None to let it through."""
        try:
            url = request.url
        except ValueError:  # a Host header yarl cannot read as an authority
            return "the Host header is not a host name"
        if self.token is None and not is_loopback(url.host or ""):
            return "this server answers at a loopback address only"
        if self.token is not None and not self._given_token(request):
            return "the access token is missing or wrong: open the address printed at start"
        if _is_websocket(request) and not _same_origin(request, url):
            return "a websocket opened by a page of another site"
        return None

    def _given_token(self, request: web.BaseRequest) -> bool:
        given = request.query.get(TOKEN_PARAM)
        if given is None:
            given = request.cookies.get(self.cookie)
        if given is None or self.token is None:
            return False
        return secrets.compare_digest(given.encode(), self.token.encode())

    def middleware(self) -> Middleware:
        """An aiohttp middleware: the checks before any handler, the cookie after the page."""

        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            why = self.refusal(request)
            if why is not None:
                return web.Response(status=403, text=f"gputui: {why}\n")
            _page_origin.set(str(request.url.origin()))
            response = await handler(request)
            if self.token is not None and TOKEN_PARAM in request.query and not response.prepared:
                # The token came in the address (and was right): the page's own requests and
                # its websocket carry it from here as a cookie that no script and no other
                # site's page can use.
                response.set_cookie(
                    self.cookie, self.token, httponly=True, samesite="Strict", path="/"
                )
            return response

        return gate


def _is_websocket(request: web.BaseRequest) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def _same_origin(request: web.BaseRequest, url: URL) -> bool:
    """Whether the page that opened this websocket came from this server. A client that is not
    a browser sends no Origin; the token (or the loopback bind) is what admits it."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True
    try:
        return URL(origin).origin() == url.origin()
    except ValueError:
        return False


class GatedServer(Server):
    """textual-serve's server with the gate in front of every route (the page, the websocket,
    downloads and the static files), its page's addresses taken from the one the browser used."""

    def __init__(self, command: str, gate: Gate, *, host: str, port: int, title: str) -> None:
        self.gate = gate
        self._bound_url = ""
        self._sessions: set[asyncio.Task[object]] = set()
        super().__init__(command, host=host, port=port, title=title)

    # textual-serve writes public_url into the page as the websocket's address. The bound
    # address is the wrong one when the browser used another name for this machine (localhost
    # for 127.0.0.1, the host's name for 0.0.0.0): the websocket would go elsewhere, without
    # the cookie, and its Origin would not match. So, while a request is handled, the address
    # the browser asked for.
    @property
    def public_url(self) -> str:
        return _page_origin.get() or self._bound_url

    @public_url.setter
    def public_url(self, url: str) -> None:
        self._bound_url = url

    async def on_startup(self, app: web.Application) -> None:
        """textual-serve hands its application here before aiohttp freezes it: the one moment
        a middleware can join every route. (Not textual-serve's banner: the command prints the
        address, with its token.)"""
        app.middlewares.append(self.gate.middleware())

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """textual-serve's session (one browser tab, one app), known to on_shutdown while it
        lasts."""
        session = asyncio.current_task()
        assert session is not None  # aiohttp runs every handler in a task
        self._sessions.add(session)
        try:
            return await super().handle_websocket(request)
        finally:
            self._sessions.discard(session)

    async def on_shutdown(self, app: web.Application) -> None:
        """End every session as the server stops. Left alone, aiohttp waits (20 s here) for the
        browsers to leave; cancelled, textual-serve's handler closes the websocket and quits the
        session's app, which closes its fleet's connections as `q` does."""
        for session in self._sessions:
            session.cancel()
