"""One sans-IO connection object per side, on h11: bytes in, heads and body bytes out.

``ClientSide`` frames the requests arriving on a client connection (h11 in
the server role); ``BackendSide`` frames one reply arriving from a backend or
a reproxy target (h11 in the client role).  Neither touches a socket: the
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
* h11's parse of a head is a pure function of its bytes (and our limits), so
  the result for a head seen moments ago is reused when the same bytes arrive
  again (``_HeadMemo``: exact bytes as the key, CRLF heads of at most 4 KiB
  without a chunked body, a few hundred entries).  Keep-alive clients repeat
  their heads and a backend repeats its reply head within the second of its
  Date; measured in bench/proxy_bench.py, this halves what h11 costs a
  proxied request.

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
from typing import Generic, TypeVar

import h11

from perlbal.http.errors import BackendProtocolError, HttpError
from perlbal.http.head import RequestHead, ResponseHead
from perlbal.http.policy import (
    BACKEND_LIMITS,
    DEFAULT_LIMITS,
    check_trailers,
    Limits,
    head_too_large,
    request_error,
    request_head,
    response_error,
    response_head,
)

__all__ = ["ClientSide", "BackendSide", "parse_request_head", "HEAD", "BODY", "DONE"]

HEAD, BODY, DONE = "HEAD", "BODY", "DONE"

_LENGTH, _CHUNKED, _CLOSE, _NONE = "length", "chunked", "close", "none"
# Perl's ClientProxy / ClientHTTP: /\b100-continue\b/ on the Expect value
_CONTINUE = re.compile(r"\b100-continue\b", re.IGNORECASE)
# The placeholder requests h11 is told we sent, one per method (only the
# method matters: it decides whether a reply has a body)
_SENT: dict[bytes, h11.Request] = {}
_END = h11.EndOfMessage()


_MEMO_MAX_HEAD = 4096
_CRLFCRLF = b"\r\n\r\n"

HeadT = TypeVar("HeadT")


class _HeadMemo(Generic[HeadT]):
    """Recently parsed heads by their exact bytes (and limits): a bounded dict,
    the oldest entry dropped first.  Only heads h11 parsed to the same end
    (CRLF CRLF) and whose body it does not have to decode are stored."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._entries: dict[tuple[bytes, Limits], HeadT] = {}

    def get(self, key: tuple[bytes, Limits]) -> HeadT | None:
        return self._entries.get(key)

    def put(self, key: tuple[bytes, Limits], value: HeadT) -> None:
        entries = self._entries
        if len(entries) >= self.size:
            del entries[next(iter(entries))]
        entries[key] = value


_REQUEST_MEMO: _HeadMemo[tuple[RequestHead, bool]] = _HeadMemo()
_RESPONSE_MEMO: _HeadMemo[ResponseHead] = _HeadMemo()


def _memo_key(data: bytes, limits: Limits) -> tuple[bytes, Limits] | None:
    """The memo key of the head at the start of ``data``, if it may be memoized."""
    end = data.find(_CRLFCRLF, 0, _MEMO_MAX_HEAD)
    if end <= 0 or end + 4 > limits.max_head_size:
        return None
    return (data[:end + 4], limits)


def _sent_request(method: bytes) -> h11.Request:
    request = _SENT.get(method)
    if request is None:
        request = h11.Request(method=method, target="/", headers=[("Host", "backend")])
        if len(_SENT) < 64:  # a backend may be asked with any token as method
            _SENT[method] = request
    return request


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
        self._framing = _NONE
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
                key = _memo_key(data, self.limits)
                if key is not None:
                    known = _REQUEST_MEMO.get(key)
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
            _REQUEST_MEMO.put(key, (head, must_close))
        return self._framed(head, must_close, bytes(rest))

    def _framed(self, head: RequestHead, must_close: bool, rest: bytes) -> RequestHead:
        """Set up the body's framing after ``head``; ``rest``: the bytes after it."""
        self.head = head
        self.must_close = must_close
        self.body_size = 0
        if head.chunked:
            self._framing = _CHUNKED
            self.state = BODY
        elif head.content_length:
            self._framing = _LENGTH
            self._remaining = head.content_length
            self._buffer = rest
            self._h11 = None  # h11 framed it; the bytes are counted from here on
            self.state = BODY
        else:
            self._framing = _NONE
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
        return self._remaining if self._framing == _LENGTH else None

    def next_body(self, at_most: int | None = None) -> bytes | None:
        """The next piece of the decoded body: non-empty bytes; b"" at its end
        (state DONE); None until more bytes arrive.  Raises HttpError (400 bad
        chunking, 413 over ``max_body_size``)."""
        if self.state == DONE:
            return b""
        if self._framing == _LENGTH:
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
        assert self._framing == _LENGTH and data
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


class BackendSide:
    """One reply from a backend or reproxy target (h11, client role).

    ``method`` is the request's method (HEAD replies have no body).  Interim
    1xx replies are read and dropped, as Perl never relays them.
    """

    def __init__(self, method: str, limits: Limits = BACKEND_LIMITS) -> None:
        self.limits = limits
        self.method = method
        self.head: ResponseHead | None = None
        self.state = HEAD
        self.body_size = 0
        #: made when a head is not in the memo (then fed everything received)
        self._h11: h11.Connection | None = None
        self._fed = 0
        self._framing = _NONE
        self._remaining = 0
        self._pending = b""
        self._eof = False
        self._clean = False
        self._leftover = b""

    def _new_h11(self) -> h11.Connection:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.limits.max_head_size)
        conn.send(_sent_request(self.method.encode("ascii")))
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
            key = _memo_key(data, self.limits)
            if key is not None:
                known = _RESPONSE_MEMO.get(key)
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
                response_head(event, self.limits)  # checked, then dropped
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
            _RESPONSE_MEMO.put(key, head)
        return self._framed(head, bytes(rest))

    def _framed(self, head: ResponseHead, rest: bytes) -> ResponseHead:
        """Set up the body's framing after ``head``; ``rest``: the bytes after it."""
        self.head = head
        if not head.has_body(self.method):
            self._framing = _NONE
            self._finish(rest, clean=True)
        elif head.chunked:
            self._framing = _CHUNKED
            self.state = BODY
        else:
            self._framing = _LENGTH if head.content_length is not None else _CLOSE
            self._remaining = head.content_length or 0
            self._pending = rest
            self._h11 = None  # framed by h11; counted from here on
            self.state = BODY
            if self._framing == _LENGTH and self._remaining == 0:
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
        if self._framing == _LENGTH:
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
        if self._framing == _CLOSE:
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
        return self._remaining if self._framing == _LENGTH else None

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


def parse_request_head(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> RequestHead:
    """One complete request head (``perlbal explain``): HttpError if refused or incomplete."""
    side = ClientSide(limits)
    side.receive_data(raw)
    head = side.next_head()
    if head is None:
        raise HttpError(400, "request head is incomplete")
    return head
