"""Exceptions raised by the sans-IO HTTP layer.

Two kinds of failure are kept apart, as h11 does (local misuse versus remote
misbehaviour, and here: which remote):

* :class:`HttpError` -- the *client* sent something we refuse.  It carries the
  status code to answer with and a human readable reason.  The runtime turns
  it into a response with :func:`perlbal.http.responses.simple_response`
  (passing ``reason`` as the message) and then closes the connection, since
  after a framing error the byte stream can no longer be trusted.
* :class:`BackendProtocolError` -- a *backend* (or a reproxy target) sent a
  reply we cannot trust.  It has no status of its own: the runtime decides
  what the client sees (typically 502/503, or a retry on another node).

Invariants: ``HttpError.status`` is always a 4xx or 5xx code; neither class
ever wraps another exception silently (``raise ... from`` is used instead).
"""

from __future__ import annotations

__all__ = ["HttpError", "BackendProtocolError"]


class HttpError(Exception):
    """A refusal of a client request: answer ``status`` and close.

    ``reason`` is shown to the client in the body of the error page, so it
    must never contain request bytes that could inject markup; all messages
    in this package are fixed strings.

    ``perl_closes_silently`` records where Perl Perlbal 1.80 does not answer
    at all but simply drops the connection (for example an unparsable request
    head, or a head over its 100 KiB limit).  We answer with a status because
    that is kinder to clients and to operators; a runtime wanting strict
    byte-for-byte parity can close instead when this flag is set.
    """

    def __init__(self, status: int, reason: str, *, perl_closes_silently: bool = False) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"HttpError status must be 4xx or 5xx, got {status}")
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.perl_closes_silently = perl_closes_silently


class BackendProtocolError(Exception):
    """A backend's reply is malformed or unsafe to relay."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
