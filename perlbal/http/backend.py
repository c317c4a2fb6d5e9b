"""``BackendSide``: one reply from a backend or a reproxy target, framed by h11.

Sans-IO like ``perlbal.http.connection.ClientSide``: the runtime feeds it what
the backend sent (``b""`` for the end of the stream) and takes the reply head
and the body's pieces.  h11 plays the client role: it is told we sent a
request with the same method (only the method matters: a HEAD reply has no
body), then parses the reply.  Interim 1xx replies are checked and dropped, as
Perl never relays them.  A Content-Length or close-delimited body is passed
through by counting once h11 has framed it; a chunked one is decoded by h11.

A request that asked to switch protocols (``upgrade=True``) may get ``101``:
that head is final, the object is done, and ``leftover`` holds the first
bytes of the new protocol (``perlbal.runtime.tunnel`` relays them).  A 101 to
any other request raises ``BackendProtocolError(UNOFFERED_SWITCH)``: the
backend must not switch a connection we did not offer to switch (the client
gets 502; issue 24).

Invariants: a reply cut short (chunked without its last chunk, fewer bytes
than its Content-Length) raises ``BackendProtocolError``, never ends cleanly;
bytes past the reply are kept in ``leftover`` and make the connection
unusable for another request (``ended_cleanly`` is False).
"""

from __future__ import annotations

import h11

from perlbal.http.errors import BackendProtocolError
from perlbal.http.framing import (BODY, CHUNKED, CLOSE, DONE, HEAD, LENGTH, NONE,
                                  RESPONSE_MEMO, memo_key)
from perlbal.http.head import ResponseHead
from perlbal.http.policy import BACKEND_LIMITS, Limits, response_error, response_head

__all__ = ["BackendSide", "UNOFFERED_SWITCH"]

UNOFFERED_SWITCH = "101 Switching Protocols to a request that was not offered an upgrade"

# The placeholder requests h11 is told we sent, one per method
_SENT: dict[bytes, h11.Request] = {}
_END = h11.EndOfMessage()
# what h11 is told we sent for a request that asks to switch protocols
_UPGRADE_REQUEST = h11.Request(method="GET", target="/", headers=[
    ("Host", "backend"), ("Connection", "Upgrade"), ("Upgrade", "websocket")])


def _sent_request(method: bytes) -> h11.Request:
    request = _SENT.get(method)
    if request is None:
        request = h11.Request(method=method, target="/", headers=[("Host", "backend")])
        if len(_SENT) < 64:  # a backend may be asked with any token as method
            _SENT[method] = request
    return request


class BackendSide:
    """One reply from a backend or reproxy target (h11, client role).

    ``method`` is the request's method (HEAD replies have no body).  Interim
    1xx replies are read and dropped, as Perl never relays them.
    """

    def __init__(self, method: str, limits: Limits = BACKEND_LIMITS, *,
                 upgrade: bool = False) -> None:
        self.limits = limits
        self.method = method
        #: the request asked to switch protocols (Upgrade): a 101 reply is then final,
        #: and what follows it (``leftover``) belongs to the new protocol
        self.upgrade = upgrade
        self.head: ResponseHead | None = None
        self.state = HEAD
        self.body_size = 0
        #: made when a head is not in the memo (then fed everything received)
        self._h11: h11.Connection | None = None
        self._fed = 0
        self._framing = NONE
        self._remaining = 0
        self._pending = b""
        self._eof = False
        self._clean = False
        self._leftover = b""

    def _new_h11(self) -> h11.Connection:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.limits.max_head_size)
        conn.send(_UPGRADE_REQUEST if self.upgrade else _sent_request(self.method.encode("ascii")))
        conn.send(_END)
        return conn

    def receive_data(self, data: bytes) -> None:
        """Bytes from the backend; b"" for the end of its stream."""
        if not data:
            self._eof = True
            if self._h11 is None and self.state == HEAD:
                self._h11 = self._new_h11()  # it says what an early end means
                data, self._pending = self._pending, b""
                self._fed = len(data)
                if data:
                    self._h11.receive_data(data)
            if self._h11 is not None:
                self._h11.receive_data(b"")
            return
        if self._h11 is not None:
            if self.state == HEAD:
                self._fed += len(data)
            self._h11.receive_data(data)
        elif self._pending:
            self._pending += data
        else:
            self._pending = data

    def next_head(self) -> ResponseHead | None:
        """The final reply head, or None until more bytes arrive.  Raises
        BackendProtocolError (also for a stream that ended before a head)."""
        assert self.state == HEAD
        key = None
        if self._h11 is None:
            if not self._pending:
                return None
            data, self._pending = self._pending, b""
            key = memo_key(data, self.limits)
            if key is not None:
                known = RESPONSE_MEMO.get(key)
                if known is not None:
                    return self._framed(known, data[len(key[0]):])
            self._h11 = self._new_h11()
            self._fed = len(data)
            self._h11.receive_data(data)
        conn = self._h11
        assert conn is not None
        interim = False
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if str(exc).startswith("Receive buffer too long"):
                    raise BackendProtocolError("reply head too large") from None
                if self._eof:
                    raise BackendProtocolError(
                        "backend closed before a complete reply head") from None
                if not self.upgrade and "_SWITCH_UPGRADE" in str(exc):  # (h11's words)
                    raise BackendProtocolError(UNOFFERED_SWITCH) from None
                raise response_error(exc) from None
            except ValueError:
                raise BackendProtocolError("malformed reply") from None
            if event is h11.NEED_DATA:
                if self._fed > self.limits.max_head_size:
                    raise BackendProtocolError("reply head too large")
                return None
            if isinstance(event, h11.ConnectionClosed):
                raise BackendProtocolError("backend closed before a complete reply head")
            if isinstance(event, h11.InformationalResponse):
                head = response_head(event, self.limits)  # checked, then dropped...
                if event.status_code == 101:  # ...but a switch (only if asked: h11)
                    self.head = head
                    self._finish(bytes(conn.trailing_data[0]), clean=False)
                    return head
                interim = True
                continue
            assert isinstance(event, h11.Response)
            break
        rest = conn.trailing_data[0]
        if self._fed - len(rest) > self.limits.max_head_size:
            raise BackendProtocolError("reply head too large")
        head = response_head(event, self.limits)
        if (key is not None and not interim and not head.chunked
                and self._fed - len(rest) == len(key[0])):
            RESPONSE_MEMO.put(key, head)
        return self._framed(head, bytes(rest))

    def _framed(self, head: ResponseHead, rest: bytes) -> ResponseHead:
        """Set up the body's framing after ``head``; ``rest``: the bytes after it."""
        self.head = head
        if not head.has_body(self.method):
            self._framing = NONE
            self._finish(rest, clean=True)
        elif head.chunked:
            self._framing = CHUNKED
            self.state = BODY
        else:
            self._framing = LENGTH if head.content_length is not None else CLOSE
            self._remaining = head.content_length or 0
            self._pending = rest
            self._h11 = None  # framed by h11; counted from here on
            self.state = BODY
            if self._framing == LENGTH and self._remaining == 0:
                self._finish(self._pending, clean=True)
        # RFC 9112 section 6.1 (policy B5): a chunked HTTP/1.0 reply is never reused
        self._reusable_version = head.http_version >= (1, 1) or not head.chunked
        return head

    def _finish(self, leftover: bytes, clean: bool) -> None:
        self.state = DONE
        self._leftover = leftover
        self._clean = clean and not leftover
        self._h11 = None
        self._pending = b""

    def next_body(self) -> bytes | None:
        """The next piece of the decoded reply body: non-empty bytes; b"" at
        its end; None until more bytes arrive.  Raises BackendProtocolError
        for a body cut short (a chunked reply without its last chunk, fewer
        bytes than Content-Length) or overlong: a short reply is never
        presented as complete."""
        if self.state == DONE:
            return b""
        if self._framing == LENGTH:
            data = self._pending
            if data:
                self._pending = b""
                extra = b""
                if len(data) > self._remaining:
                    # bytes past the reply: served to nobody, and the connection
                    # is not reused (a late reply must not reach the next client)
                    data, extra = data[:self._remaining], data[self._remaining:]
                self._remaining -= len(data)
                self.body_size += len(data)
                if self._remaining == 0:
                    self._finish(extra, clean=True)
                return data
            if self._eof:
                raise BackendProtocolError("backend closed mid-body")
            return None
        if self._framing == CLOSE:
            data = self._pending
            if data:
                self._pending = b""
                self.body_size += len(data)
                return data
            if self._eof:
                self._finish(b"", clean=False)  # delimited by the close: not reusable
                return b""
            return None
        conn = self._h11
        assert conn is not None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self._eof:
                    raise BackendProtocolError("backend closed mid-body") from None
                raise response_error(exc) from None
            if event is h11.NEED_DATA:
                if self._eof:
                    raise BackendProtocolError("backend closed mid-body")
                return None
            if isinstance(event, h11.Data):
                if not event.data:
                    continue
                self.body_size += len(event.data)
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage):
                self._finish(bytes(conn.trailing_data[0]), clean=True)
                return b""
            raise BackendProtocolError("backend closed mid-body")

    @property
    def done(self) -> bool:
        return self.state == DONE

    @property
    def remaining(self) -> int | None:
        """Content-Length bytes still to come (None: chunked or close-delimited)."""
        if self.state == DONE:
            return 0
        return self._remaining if self._framing == LENGTH else None

    @property
    def leftover(self) -> bytes:
        """Bytes the backend sent past the end of its reply (then it is not reused)."""
        return self._leftover

    @property
    def ended_cleanly(self) -> bool:
        """The reply ended exactly where its framing said, with nothing after it,
        and its framing allows another reply on the connection."""
        return self.state == DONE and self._clean and self._reusable_version

    _reusable_version = True
