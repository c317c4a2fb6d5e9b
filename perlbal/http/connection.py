"""One sans-IO connection object per side, on h11: bytes in, heads and body bytes out.

``ClientSide`` (this module) frames the requests arriving on a client
connection (h11 in the server role); ``BackendSide`` (``perlbal.http.backend``,
re-exported here) frames one reply arriving from a backend or a reproxy target
(h11 in the client role).  Neither touches a socket: the
runtime feeds them what it received and acts on what they return.  Framing,
keep-alive, Expect/100-continue and "where does the next message start" live
here and nowhere else; what we refuse beyond h11 is ``perlbal.http.policy``.

How h11 is used, and why:

* every head is parsed by h11, one fresh ``h11.Connection`` per message (a
  few microseconds), so our own serializer keeps writing the bytes Perl's
  clients see (status lines, header case and order) without h11's state
  machine waiting for a response it never sent;
* chunked bodies are decoded by h11 (its ``Data`` / ``EndOfMessage`` events);
* once h11 has framed a Content-Length or close-delimited body, its bytes are
  passed through by counting, never copied through h11's receive buffer: a
  large upload or download costs no per-event Python work;
* a head h11 parsed moments ago is not parsed again for the same bytes
  (``perlbal.http.framing.HeadMemo``).

States of ``ClientSide`` (a table, as h11 keeps its own)::

    HEAD --request head--> BODY --last body byte--> DONE --start_next()--> HEAD
    HEAD --request head without body--> DONE

Invariants: a method is only called in the states it names; after an
``HttpError`` / ``BackendProtocolError`` the object is dead and the connection
must be closed; bytes past the end of a message are never lost
(``ClientSide.buffered`` / ``BackendSide.leftover``).
"""

from __future__ import annotations

import re

import h11

from perlbal.http.backend import BackendSide
from perlbal.http.errors import HttpError
from perlbal.http.framing import (BODY, CHUNKED, DONE, HEAD, LENGTH, NONE, REQUEST_MEMO,
                                  memo_key)
from perlbal.http.head import RequestHead
from perlbal.http.policy import (
    DEFAULT_LIMITS,
    Limits,
    check_trailers,
    head_too_large,
    request_error,
    request_head,
)

__all__ = ["ClientSide", "BackendSide", "parse_request_head", "HEAD", "BODY", "DONE"]

# Perl's ClientProxy / ClientHTTP: /\b100-continue\b/ on the Expect value
_CONTINUE = re.compile(r"\b100-continue\b", re.IGNORECASE)


class ClientSide:
    """Requests arriving on one client connection, one at a time (h11, server role)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, max_body_size: int | None = None) -> None:
        self.limits = limits
        #: chunked bodies larger than this are refused with 413 (None: no limit)
        self.max_body_size = max_body_size
        self.state = HEAD
        self.head: RequestHead | None = None
        #: the connection must close after this request (RFC 9112 section 6.1)
        self.must_close = False
        #: decoded body bytes handed out so far
        self.body_size = 0
        self._h11: h11.Connection | None = None
        self._fed = 0  # bytes given to the h11 connection of this head
        self._line_done = False  # the request line's LF has arrived
        self._head_start = b""  # the first bytes of this head (R8's wording)
        self._buffer = b""  # bytes not given to h11: a length-framed body, a next request
        self._framing = NONE
        self._remaining = 0
        self._continue_due = False

    # --- bytes in -------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes the client sent (not b"": the runtime handles the end of the stream)."""
        if self._h11 is not None:
            self._feed(data)
        elif self._buffer:
            self._buffer += data
        else:
            self._buffer = data

    def _feed(self, data: bytes) -> None:
        assert self._h11 is not None
        if self.state == HEAD:
            if not self._fed:
                # RFC 9112 section 2.2 (Perl's ditch_leading_rn): empty lines
                # before a request line are ignored; h11 would refuse them
                data = data.lstrip(b"\r\n")
                if not data:
                    return
            if len(self._head_start) < 4096:
                self._head_start += data[:4096]
            if not self._line_done:
                newline = data.find(b"\n")
                if newline >= 0:
                    self._line_done = self._fed + newline < self.limits.max_head_size
            self._fed += len(data)
        self._h11.receive_data(data)

    @property
    def buffered(self) -> bytes:
        """Bytes received past the current message (pipelined), or not yet parsed."""
        if self._h11 is not None:
            return bytes(self._h11.trailing_data[0])
        return self._buffer

    @property
    def has_buffered(self) -> bool:
        if self._h11 is not None:
            return bool(self._h11.trailing_data[0])
        return bool(self._buffer)

    # --- the head -------------------------------------------------------------

    def next_head(self) -> RequestHead | None:
        """The next request head, or None until more bytes arrive.  Raises HttpError."""
        assert self.state == HEAD
        key = None
        if self._h11 is None:
            data = self._buffer
            if not data:
                return None  # (h11 is made when bytes come: a whole head may hit the memo)
            if data[:1] not in (b"\r", b"\n"):
                key = memo_key(data, self.limits)
                if key is not None:
                    known = REQUEST_MEMO.get(key)
                    if known is not None:
                        return self._framed(known[0], known[1], data[len(key[0]):])
            self._buffer = b""
            self._h11 = h11.Connection(h11.SERVER,
                                       max_incomplete_event_size=self.limits.max_head_size)
            self._fed = 0
            self._line_done = False
            self._head_start = b""
            if data:
                self._feed(data)
        conn = self._h11
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if str(exc).startswith("Receive buffer too long"):
                raise head_too_large(self._line_done) from None
            raise request_error(exc, self._head_start) from None
        except ValueError:  # not seen from h11 0.16, but never a traceback to a client
            raise HttpError(400, "malformed request head", perl_closes_silently=True) from None
        if event is h11.NEED_DATA:
            if self._fed > self.limits.max_head_size:
                raise head_too_large(self._line_done)
            return None
        assert isinstance(event, h11.Request)
        rest = conn.trailing_data[0]
        if self._fed - len(rest) > self.limits.max_head_size:  # R1: one big read
            raise head_too_large(self._line_done)
        head, must_close = request_head(event, self.limits)
        if key is not None and not head.chunked and self._fed - len(rest) == len(key[0]):
            REQUEST_MEMO.put(key, (head, must_close))
        return self._framed(head, must_close, bytes(rest))

    def _framed(self, head: RequestHead, must_close: bool, rest: bytes) -> RequestHead:
        """Set up the body's framing after ``head``; ``rest``: the bytes after it."""
        self.head = head
        self.must_close = must_close
        self.body_size = 0
        if head.chunked:
            self._framing = CHUNKED
            self.state = BODY
        elif head.content_length:
            self._framing = LENGTH
            self._remaining = head.content_length
            self._buffer = rest
            self._h11 = None  # h11 framed it; the bytes are counted from here on
            self.state = BODY
        else:
            self._framing = NONE
            self._buffer = rest
            self._h11 = None
            self.state = DONE
        # RFC 9110 section 10.1.1 has HTTP/1.0 expectations ignored, but Perl
        # answers them on its chunked paths (ClientProxy::handle_chunked_upload,
        # ClientHTTP::handle_put_chunked), and MogileFS-style uploaders wait for it
        self._continue_due = (self.state == BODY and (head.http_version >= (1, 1) or head.chunked)
                              and not rest and _CONTINUE.search(head.get("Expect") or "")
                              is not None)
        return head

    # --- the body -------------------------------------------------------------

    @property
    def remaining(self) -> int | None:
        """Body bytes still to come (None: chunked, unknown)."""
        if self.state != BODY:
            return 0
        return self._remaining if self._framing == LENGTH else None

    def next_body(self, at_most: int | None = None) -> bytes | None:
        """The next piece of the decoded body: non-empty bytes; b"" at its end
        (state DONE); None until more bytes arrive.  Raises HttpError (400 bad
        chunking, 413 over ``max_body_size``)."""
        if self.state == DONE:
            return b""
        if self._framing == LENGTH:
            data = self._buffer
            if not data:
                return None
            take = self._remaining if at_most is None else min(self._remaining, at_most)
            if len(data) > take:
                self._buffer = data[take:]
                data = data[:take]
            else:
                self._buffer = b""
            self._remaining -= len(data)
            self.body_size += len(data)
            if self._remaining == 0:
                self.state = DONE
            return data
        conn = self._h11
        assert conn is not None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise request_error(exc) from None
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Data):
                if not event.data:
                    continue
                self.body_size += len(event.data)
                if self.max_body_size is not None and self.body_size > self.max_body_size:
                    raise HttpError(413, "request body too large")
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage):
                check_trailers(event)
                self._buffer = bytes(conn.trailing_data[0])
                self._h11 = None
                self.state = DONE
                return b""
            raise HttpError(400, "malformed chunked body", perl_closes_silently=True)

    def unread(self, data: bytes) -> None:
        """Give back Content-Length body bytes taken with next_body (a sample
        that buffered uploads read to measure a client's rate)."""
        assert self._framing == LENGTH and data
        self._buffer = data + self._buffer
        self._remaining += len(data)
        self.body_size -= len(data)
        self.state = BODY

    def take_continue(self) -> bool:
        """True once, when a ``100 Continue`` is due: the client asked with
        ``Expect: 100-continue`` and none of its body has arrived.
        Perl answers it itself on every role (ClientProxy, ClientHTTP), to
        HTTP/1.0 clients too when their body is chunked."""
        due = self._continue_due
        self._continue_due = False
        return due and self.body_size == 0 and not self.has_buffered

    def start_tunnel(self) -> None:
        """The connection switched protocols (101): what was buffered has been
        taken (``buffered``) and nothing more is HTTP."""
        self._buffer = b""
        self._h11 = None
        self.state = DONE
        self.must_close = True

    # --- between requests -----------------------------------------------------

    def start_next(self) -> None:
        """After DONE: get ready for the next request on the connection."""
        assert self.state == DONE
        if self._h11 is not None:
            self._buffer = bytes(self._h11.trailing_data[0])
            self._h11 = None
        self.state = HEAD
        self.head = None
        self.must_close = False


def parse_request_head(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> RequestHead:
    """One complete request head (``perlbal explain``): HttpError if refused or incomplete."""
    side = ClientSide(limits)
    side.receive_data(raw)
    head = side.next_head()
    if head is None:
        raise HttpError(400, "request head is incomplete")
    return head
