"""Typed plugin hooks and the runner that calls a service's plugin chain.

Perl Perlbal calls ``$svc->run_hook($name, ...)`` at fixed points of a
request (doc/hacking/hooks.txt).  Here each hook point is a dataclass whose
docstring says when it fires and what a true return does; a plugin takes part
by defining a method named after the hook (``Hook.name``), sync or async,
taking the hook object::

    class MyPlugin(Plugin):
        name = "MyPlugin"

        async def start_web_request(self, hook: StartWebRequest) -> bool:
            ...
            return False          # not handled: the next plugin / the core goes on

Two kinds, as in Perl (mitmproxy's lesson: halting the chain is explicit):

* ``HANDLER`` hooks run the plugins of ``svc.plugin_order`` in order and stop
  at the first that returns a true value -- that plugin has taken the request
  over (sent the answer itself, or changed what the core will do, as the
  hook's docstring says);
* ``GENERAL`` hooks run every plugin; return values are ignored.

Isolation: a plugin that raises is logged (with the plugin and the hook) and
never takes the server down.  In a HANDLER hook the request is answered
``500`` when nothing was sent to the client yet (else the connection is
closed), and the hook counts as handled; the next request on the server is
served normally.  In a GENERAL hook the error is logged and the other
plugins still run.

The ``start_http_request`` decisions of AccessControl, Redirect,
MaxContentLength and NotModified are pure ``decide()`` functions run by
``perlbal.routing.dispatch(run_hooks=True)`` (so ``perlbal explain`` shares
them); every other hook goes through :func:`fire`.
"""

from __future__ import annotations

import enum
import inspect
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from perlbal.graph import Service

if TYPE_CHECKING:
    from perlbal.plugins import Plugin, PluginRegistry
    from perlbal.plugins.view import RequestView

log = logging.getLogger("perlbal.plugins")

Headers = list[tuple[str, str]]

__all__ = [
    "ALL_HOOKS", "BackendClientAssigned", "BackendHook", "BackendReadableVerify",
    "BackendResponseReceived", "BackendWriteVerify", "ConcatGetPoststatFileMissing",
    "ConcatGetPoststatPreSend", "EndProxyRequest", "HandlePut", "Hook", "HookKind", "HookRunner",
    "MakeHighPriority", "MakeLowPriority", "ModifyResponseHeaders", "PrependBody",
    "ProxyReadRequest", "PutWriteout", "ReturnToBase",
    "ReproxyFhFinished", "StartFileReproxy", "StartHttpRequest", "StartProxyRequest",
    "StartSendFile", "StartServeRequest", "StartWebRequest", "StaticGetPoststatFileMissing",
    "StaticGetPoststatPreSend", "fire", "fire_backend",
]


class HookKind(enum.Enum):
    HANDLER = "handler"   # first true return stops the chain
    GENERAL = "general"   # every plugin runs, returns ignored


@dataclass
class Hook:
    """Base: every hook carries the request's context (``ctx.service`` is the
    service whose chain runs, ``ctx.head`` the request head, ``ctx.scratch``
    per-request plugin state, Perl's ``$client->{scratch}``)."""

    name: ClassVar[str] = ""
    kind: ClassVar[HookKind] = HookKind.HANDLER
    roles: ClassVar[tuple[str, ...]] = ()
    ctx: "RequestView"


# --- every role -----------------------------------------------------------------------


@dataclass
class StartHttpRequest(Hook):
    """A request head was read and the role handler is about to act on it, after
    ``start_web_request`` / ``start_proxy_request``.  True: the plugin has
    answered the client itself (Cgilike).  AccessControl, Redirect,
    MaxContentLength and NotModified make this decision as pure ``decide()``
    functions in ``perlbal.routing``, on every service the request visits."""

    name = "start_http_request"
    roles = ("reverse_proxy", "web_server")


# --- web_server ------------------------------------------------------------------------


@dataclass
class StartWebRequest(Hook):
    """A web_server service got a request head, before anything is served.
    True: the plugin answered the client itself.  (Stats counts web_requests.)"""

    name = "start_web_request"
    roles = ("web_server",)


@dataclass
class StartServeRequest(Hook):
    """A GET/HEAD is about to be mapped to a file: ``uri`` is the decoded request
    path (Perl's ``\\$uri``); a plugin may assign a new ``uri`` to serve another
    file (Palimg, AutoRemoveLeadingDir).  True: the plugin answered itself."""

    name = "start_serve_request"
    roles = ("web_server",)
    uri: str = ""


@dataclass
class StaticGetPoststatFileMissing(Hook):
    """The file a GET/HEAD maps to does not exist (``path``), before the 404.
    True: the plugin answered (LazyCDN hands the client to its fallback)."""

    name = "static_get_poststat_file_missing"
    roles = ("web_server",)
    path: str = ""


@dataclass
class StaticGetPoststatPreSend(Hook):
    """A file exists and a 200 is about to be sent (not for 206/304/416);
    ``mtime`` is its modification time.  True: the plugin answered."""

    name = "static_get_poststat_pre_send"
    roles = ("web_server",)
    mtime: float = 0.0


@dataclass
class ConcatGetPoststatFileMissing(Hook):
    """A concatenated GET (``/dir/??a,b``) names a missing file, before the 404.
    True: the plugin answered."""

    name = "concat_get_poststat_file_missing"
    roles = ("web_server",)


@dataclass
class ConcatGetPoststatPreSend(Hook):
    """A concatenated GET is about to be answered 200; ``mtime`` is the newest
    file's modification time.  True: the plugin answered."""

    name = "concat_get_poststat_pre_send"
    roles = ("web_server",)
    mtime: float = 0.0


@dataclass
class ModifyResponseHeaders(Hook):
    """The response head is built and about to be sent: plugins may change
    ``status`` and ``headers`` in place.  Web server: fires for files; True
    means the plugin sent the whole response itself.  Reverse proxy: fires
    when the backend's head was read (``backend`` True); the return value is
    ignored there, as in Perl's BackendHTTP."""

    name = "modify_response_headers"
    roles = ("web_server", "reverse_proxy")
    status: int = 200
    headers: Headers = field(default_factory=list)
    backend: bool = False


@dataclass
class StartSendFile(Hook):
    """A file is open (``fh``) and its body is about to be sent: ``status`` and
    ``headers`` are the head that would go out, then ``count`` bytes from
    ``offset``.  True: the plugin sent the head and the body itself (Palimg)."""

    name = "start_send_file"
    roles = ("web_server",)
    path: str = ""
    fh: BinaryIO | None = None
    status: int = 200
    headers: Headers = field(default_factory=list)
    offset: int = 0
    count: int = 0


@dataclass
class StartFileReproxy(Hook):
    """The backend asked (X-REPROXY-FILE) for ``path`` to be sent; a plugin may
    change ``path``.  True: the plugin handled it.  (Stats counts
    files_reproxied.)  Fired by the reproxy code."""

    name = "start_file_reproxy"
    roles = ("reverse_proxy",)
    path: str = ""


@dataclass
class ReproxyFhFinished(Hook):
    """A reproxied file was sent completely, before its handle is closed.
    True: the plugin takes care of the rest.  Fired by the reproxy code."""

    name = "reproxy_fh_finished"
    roles = ("reverse_proxy",)


@dataclass
class HandlePut(Hook):
    """A PUT (``enable_put``) passed its length checks (Content-Length present,
    within ``max_put_size``), before its file name is checked and before any
    of its body is read, as Perl's ClientHTTP fires it.  True: the plugin has
    taken the PUT over and answered the client itself (the core reads no body
    and writes no file)."""

    name = "handle_put"
    roles = ("web_server",)


@dataclass
class PutWriteout(Hook):
    """A piece of a PUT's body (``data``) is about to be written to the file
    (``path``, the temporary file that becomes the target once the body is
    complete).  True: the plugin took the piece; the core neither writes it nor
    counts it in the Content-MD5 check (Perl's put_writeout leaves the piece in
    its buffer instead)."""

    name = "put_writeout"
    roles = ("web_server",)
    data: bytes = b""
    path: str = ""


# --- reverse_proxy ---------------------------------------------------------------------


@dataclass
class StartProxyRequest(Hook):
    """A reverse proxy read a request head, before a backend is asked for.
    Plugins may change ``ctx.head`` (FlvStreaming adds a Range).  True: the
    plugin answered the client itself; no backend is used (Throttle's 403).
    A plugin may also await here (Throttle's delay)."""

    name = "start_proxy_request"
    roles = ("reverse_proxy",)


@dataclass
class ProxyReadRequest(Hook):
    """A reverse proxy read the part of a request body it holds before asking
    for a backend (all of a small body, or ``buffer_backend_connect`` bytes),
    for requests with a body only, as Perl fires it; ``body`` holds those bytes
    (empty when the body was spooled to disk).  True: the plugin answered the
    client itself; no backend is used."""

    name = "proxy_read_request"
    roles = ("reverse_proxy",)
    body: bytes = b""


@dataclass
class MakeHighPriority(Hook):
    """Choosing the queue, when the high_priority_cookie did not already make
    the request high priority.  True: wait in the high-priority queue (Highpri)."""

    name = "make_high_priority"
    roles = ("reverse_proxy",)


@dataclass
class MakeLowPriority(Hook):
    """Choosing the queue for a request that is not high priority.  True: wait
    in the low-priority queue (AccessControl's queue_low decides in routing)."""

    name = "make_low_priority"
    roles = ("reverse_proxy",)


@dataclass
class BackendClientAssigned(Hook):
    """A backend connection was given to the request, before the request is
    written to it: ``headers`` are the backend request's headers, which
    plugins may change (Queues, XFFExtras); Stats starts its timer.  True: the
    plugin has taken the request over, as in Perl: the core sends nothing to
    the backend (``backend`` is its connection, for a plugin that speaks to
    it itself) and closes that connection afterwards; the plugin answers the
    client (else the client connection is closed)."""

    name = "backend_client_assigned"
    roles = ("reverse_proxy",)
    headers: Headers = field(default_factory=list)
    high_priority: bool = False
    ipport: str = ""
    backend: Any = None


@dataclass
class BackendResponseReceived(Hook):
    """The backend's response head arrived (``status``, ``headers``), before
    anything goes to the client.  True: the plugin answered the client
    itself; the backend connection is dropped."""

    name = "backend_response_received"
    roles = ("reverse_proxy",)
    status: int = 0
    headers: Headers = field(default_factory=list)


@dataclass
class PrependBody(Hook):
    """Just after the response head is sent to the client, before the backend's
    body: bytes appended to ``data`` go out first (FlvStreaming's FLV header).
    True: stop the chain."""

    name = "prepend_body"
    roles = ("reverse_proxy",)
    data: bytearray = field(default_factory=bytearray)


@dataclass
class EndProxyRequest(Hook):
    """GENERAL.  A reverse-proxied request is over (answered, failed, or the
    client left).  Every plugin runs; returns are ignored (Throttle counts
    the IP's concurrent requests down)."""

    name = "end_proxy_request"
    kind = HookKind.GENERAL
    roles = ("reverse_proxy",)


@dataclass
class ReturnToBase(Hook):
    """Fired on the *selector's* plugins (not the selected service's): a client that a
    selector handed to ``ctx.service`` got its whole response and the connection
    stays open (Perl's ClientHTTPBase http_response_sent).  True: the connection
    stays with ``ctx.service``; its next request skips the selector.  False (no
    plugin): it returns to the selector, which picks the service of the next
    request afresh."""

    name = "return_to_base"
    roles = ("selector",)


@dataclass
class BackendHook:
    """Base of the hooks about a backend connection that serves no request yet
    (no ``ctx``): ``service`` is the reverse proxy whose plugins run,
    ``backend`` the connection's byte stream (``send`` / ``receive``), ``ipport``
    its node.  A plugin that raises fails the verification: the connection is
    closed and the node not verified again for a minute."""

    name: ClassVar[str] = ""
    kind: ClassVar[HookKind] = HookKind.HANDLER
    roles: ClassVar[tuple[str, ...]] = ()
    service: Service
    backend: Any
    ipport: str = ""
    verified: bool = True


@dataclass
class BackendWriteVerify(BackendHook):
    """A new backend connection of a ``verify_backend`` service is connected,
    before ``OPTIONS <verify_backend_path>`` is sent (Perl's BackendHTTP
    event_write in state connecting).  True: the plugin verified the connection
    its own way; ``verified`` is its verdict (default True): the connection is
    used, or closed and its node left unverified for a minute."""

    name = "backend_write_verify"
    roles = ("reverse_proxy",)


@dataclass
class BackendReadableVerify(BackendHook):
    """The first bytes of the backend's answer to the verifying ``OPTIONS``
    arrived (``data``; Perl fires it each time the socket is readable while
    waiting for that answer).  True: the plugin judged the answer itself (it may
    read more from ``backend``); ``verified`` is its verdict, as in
    ``backend_write_verify``.  False: the core reads the answer and requires a
    keep-alive reply."""

    name = "backend_readable_verify"
    roles = ("reverse_proxy",)
    data: bytes = b""


ALL_HOOKS: tuple[type[Hook] | type[BackendHook], ...] = (
    StartHttpRequest, StartWebRequest, StartServeRequest, StaticGetPoststatFileMissing,
    StaticGetPoststatPreSend, ConcatGetPoststatFileMissing, ConcatGetPoststatPreSend,
    ModifyResponseHeaders, StartSendFile, HandlePut, PutWriteout, StartFileReproxy,
    ReproxyFhFinished, StartProxyRequest, ProxyReadRequest, MakeHighPriority, MakeLowPriority,
    BackendClientAssigned, BackendWriteVerify, BackendReadableVerify, BackendResponseReceived,
    PrependBody, EndProxyRequest, ReturnToBase,
)


# --- running a chain --------------------------------------------------------------------


class HookRunner:
    """Runs one hook through a service's plugin chain (``svc.plugin_order``)."""

    def __init__(self, registry: "PluginRegistry") -> None:
        self.registry = registry

    def chain(self, svc: Service, hook_name: str) -> list[tuple["Plugin", Any]]:
        out: list[tuple["Plugin", Any]] = []
        for name in svc.plugin_order:
            plugin = self.registry.find(name)
            method = getattr(plugin, hook_name, None) if plugin is not None else None
            if plugin is not None and callable(method):
                out.append((plugin, method))
        return out

    async def run(self, svc: Service, hook: Hook | BackendHook) -> bool:
        """True when a HANDLER hook was handled (or a plugin failed in it)."""
        for plugin, method in self.chain(svc, hook.name):
            try:
                result = method(hook)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                log.exception("plugin %s failed in hook %s (service %s)",
                              plugin.name, hook.name, svc.name)
                if hook.kind is HookKind.GENERAL:
                    continue
                if isinstance(hook, BackendHook):
                    hook.verified = False
                else:
                    await _answer_failure(hook.ctx, plugin.name)
                return True
            if result and hook.kind is HookKind.HANDLER:
                return True
        return False


async def _answer_failure(ctx: "RequestView", plugin: str) -> None:
    """A plugin raised: 500 when nothing was sent yet, else the connection ends."""
    ctx.last_keep_alive = False
    if ctx.response_started:
        return
    try:
        await ctx.send_simple(500, f"Error in plugin {plugin}.", keep_alive=False)
    except Exception:  # the client is gone: nothing more to do
        pass


_runners: dict[int, HookRunner] = {}


def runner_for(registry: "PluginRegistry") -> HookRunner:
    runner = _runners.get(id(registry))
    if runner is None or runner.registry is not registry:
        runner = _runners[id(registry)] = HookRunner(registry)
    return runner


async def fire(hook: Hook, svc: Service | None = None) -> bool:
    """Run ``hook`` on ``svc`` (default ``hook.ctx.service``); see ``HookRunner.run``."""
    service = svc if svc is not None else hook.ctx.service
    if not service.plugin_order:  # the common case costs one attribute read
        return False
    registry = hook.ctx.plugin_registry()
    if registry is None:
        return False
    return await runner_for(registry).run(service, hook)


async def fire_backend(hook: BackendHook, registry: "PluginRegistry | None") -> bool:
    """Run a backend hook on ``hook.service``'s plugins (``registry``: the
    interpreter's plugins)."""
    if not hook.service.plugin_order or registry is None:
        return False
    return await runner_for(registry).run(hook.service, hook)


def hook_table() -> list[tuple[str, str, str, str]]:
    """(name, kind, roles, docstring) per hook, for docs/plugins.md."""
    rows = []
    for cls in ALL_HOOKS:
        doc = " ".join((cls.__doc__ or "").split())
        rows.append((cls.name, cls.kind.value.upper(), ", ".join(cls.roles), doc))
    return rows


def file_size(fh: BinaryIO) -> int:
    return os.fstat(fh.fileno()).st_size


def role_owner(registry: "PluginRegistry", role: str | None) -> "Plugin | None":
    """The plugin declaring ``role`` (EchoService's ``echo``); it serves whole
    connections through its ``serve_connection(runtime, stream, svc)``."""
    if not role:
        return None
    for name in registry.names():
        plugin = registry.get(name)
        if role in plugin.roles and callable(getattr(plugin, "serve_connection", None)):
            return plugin
    return None


def hooks_markdown() -> str:
    """The hook table of docs/plugins.md (a test keeps the page equal to this)."""
    lines = ["| hook | kind | roles | when it fires / what a true return does |",
             "|---|---|---|---|"]
    for name, kind, roles, doc in hook_table():
        lines.append(f"| `{name}` | {kind} | {roles} | {doc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
