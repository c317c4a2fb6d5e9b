"""The ``web_server`` role: files from ``docroot``, as Perl's ClientHTTP(Base).pm serves them.

GET/HEAD serve a file (200, 206 for ``Range: bytes=a-b``, 416, 304 when
If-Modified-Since equals Last-Modified, IE's ``; length=N`` honoured), a
directory's first existing ``index_files`` entry, a listing when
``dirindexing`` is on (else Perl's 200 "Directory listing disabled"), or
several files at once with ``enable_concatenate_get`` (``/dir/??a.css,b.css``).
PUT (``enable_put``) and DELETE (``enable_delete``) write and remove files;
any other method answers 400, as Perl does.  Replies use the same bytes as Perl
(``perlbal.http.responses``); MIME types come from the graph's ``mime`` map.

Path safety policy (ours is stricter than Perl's in every case):
* the request path is percent-decoded once (Perl's ``durl``) and must then
  start with ``/`` and contain no ``..`` segment: 403 "Bogus URL";
* a NUL byte or a backslash anywhere in it is refused with 400;
* after resolving symlinks the file must still lie inside the (resolved)
  docroot; a symlink leading out answers 403 (links inside are followed);
* PUT and DELETE use the raw (not decoded) path and accept only Perl's
  conservative ``/[\\w.-]+`` components (400 "Invalid filename"), and the
  directory written into must resolve inside docroot (403 otherwise).

Uploads are atomic: the body goes to a hidden temp file beside the target,
which is renamed over the target only when the whole body arrived, fitted
``max_put_size`` / ``max_chunked_request_size`` and matched Content-MD5 (when
``enable_md5``); on any failure the temp file is removed.  A Content-Length
over ``max_put_size`` is refused before a byte of the body is read.

The service's own HEADER insert/remove rules are applied to the request head
before it is served (Perl applies HEADER rules to requests only).

Disk work (stat, open, listing, writes, renames) runs in worker threads; file
bodies go out with zero-copy ``sendfile`` through asyncio's ``loop.sendfile``
when the client stream is a plain asyncio socket, else by chunked reads.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import errno
import hashlib
import html
import os
import re
import stat
import tempfile
import time
import urllib.parse
from dataclasses import replace
from typing import Any, BinaryIO

import anyio
from anyio import to_thread

from perlbal.http import HttpError, RequestHead, evaluate_range, file_response_head, munge_headers
from perlbal.http.responses import SERVER_TOKEN, keep_alive_headers, render_head
from perlbal.runtime.context import RequestContext

__all__ = ["handle"]

_CHUNK = 256 * 1024
_PUT_PATH = re.compile(r"((?:/[\w\-.]+)*)/([\w\-.]+)", re.ASCII)
_DELETE_PATH = re.compile(r"(?:/[\w\-.]+)+", re.ASCII)


class _Refuse(Exception):
    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.message = message


def _http_date(when: float) -> str:
    return email.utils.formatdate(when, usegmt=True)


def _durl(text: str) -> str:
    """Perl's Util::durl: %XX decoded (as latin-1 bytes, then read as UTF-8 names)."""
    raw = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)
    return raw.encode("latin-1", "replace").decode("utf-8", "surrogateescape")


def _docroot(ctx: RequestContext) -> str | None:
    value = ctx.service.get("docroot")
    return value if isinstance(value, str) and value else None


def _inside(root: str, path: str) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _check_safe(uri: str) -> None:
    if "\0" in uri or "\\" in uri:
        raise _Refuse(400, "Bad characters in URL")
    if not uri.startswith("/") or ".." in uri.split("?", 1)[0].split("/"):
        raise _Refuse(403, "Bogus URL")


def _mime(ctx: RequestContext, name: str) -> str | None:
    m = re.search(r"\.(\w+)$", name)
    return ctx.server.graph.mime.get(m.group(1)) if m else None


def _stats(ctx: RequestContext, key: str) -> None:
    """Feed the Stats plugin's counters, when it is registered on the service."""
    counters: Any = ctx.service.extra.get("stats")
    if counters is not None and hasattr(counters, key):
        setattr(counters, key, getattr(counters, key) + 1)


async def _stat(path: str) -> os.stat_result | None:
    try:
        return await to_thread.run_sync(os.stat, path)
    except (OSError, ValueError):
        return None


async def handle(ctx: RequestContext) -> bool:
    """Serve one request; True when the client connection may carry another."""
    rules = ctx.service.headers
    if rules.remove or rules.insert:
        ctx.head = replace(ctx.head, headers=tuple(
            munge_headers(list(ctx.head.headers), rules.remove, rules.insert)))
    _stats(ctx, "web_requests")
    method = ctx.head.method
    try:
        if method in ("GET", "HEAD"):
            return await _serve(ctx, ctx.head.target)
        if method == "PUT":
            return await _put(ctx)
        if method == "DELETE":
            return await _delete(ctx)
        return await ctx.send_simple(400)
    except _Refuse as refusal:
        return await ctx.send_simple(refusal.status, refusal.message)


# --- GET / HEAD ------------------------------------------------------------------


def _ims(head: RequestHead) -> tuple[str, int | None]:
    ims = head.get("If-Modified-Since") or ""
    m = re.search(r"; length=(\d+)", ims)
    if m is None:
        return ims, None
    return ims[: m.start()] + ims[m.end():], int(m.group(1))


async def _serve(ctx: RequestContext, target: str) -> bool:
    uri = _durl(target)
    _check_safe(uri)
    if "??" in uri:
        return await _serve_multiple(ctx, uri)
    uri = uri.split("?", 1)[0]
    docroot = _docroot(ctx)
    if docroot is None:
        raise _Refuse(500, "Docroot unconfigured")
    path = docroot + uri
    st = await _stat(path)
    if st is None:
        raise _Refuse(404)
    if not _inside(docroot, path):
        raise _Refuse(403, "Forbidden")
    if stat.S_ISDIR(st.st_mode):
        return await _directory(ctx, docroot, uri, st)
    return await _file(ctx, path, st)


async def _file(ctx: RequestContext, path: str, st: os.stat_result) -> bool:
    head = ctx.head
    regular = stat.S_ISREG(st.st_mode)
    lastmod = _http_date(st.st_mtime)
    size = st.st_size if regular else None
    ims, ims_len = _ims(head)
    not_mod = regular and ims == lastmod and not (ims_len and ims_len != size)
    rng = evaluate_range(head.get("Range"), size)
    status = 304 if not_mod else rng.status
    if not regular:
        # Perl sends only Date/Server/Last-Modified for odd files; we refuse them
        raise _Refuse(403, "Forbidden")
    assert size is not None
    keep = ctx.keep_alive
    data = file_response_head(
        status, date=_http_date(time.time()), last_modified=lastmod,
        content_type=_mime(ctx, path) or "text/plain", size=size,
        range_start=rng.start if status == 206 else None,
        range_end=rng.end if status == 206 else None, keep_alive=keep,
        idle_timeout=ctx.idle_timeout, server_tokens=ctx.server_tokens)
    if head.method == "HEAD" or status in (304, 416):
        await ctx.send(data)
        return keep
    offset, count = (rng.start, rng.end - rng.start + 1) if status == 206 else (0, size)
    try:
        fh: BinaryIO = await to_thread.run_sync(open, path, "rb")
    except OSError:
        return False  # Perl closes when a stat'ed file cannot be opened
    try:
        await ctx.send(data)
        _stats(ctx, "files_sent")
        await _send_file(ctx, fh, offset, count)
    finally:
        await to_thread.run_sync(fh.close)
    return keep


async def _send_file(ctx: RequestContext, fh: BinaryIO, offset: int, count: int) -> None:
    """``count`` bytes of ``fh`` from ``offset``: zero-copy when the stream allows it."""
    if count <= 0:
        return
    transport = getattr(ctx.stream, "_transport", None)
    if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
        try:
            # flushes what the transport buffers first, then os.sendfile (or a
            # read/write fallback for TLS transports)
            await asyncio.get_running_loop().sendfile(transport, fh, offset, count)
            return
        except (ConnectionError, OSError) as exc:
            raise anyio.BrokenResourceError from exc
        except (RuntimeError, NotImplementedError):
            pass  # fall through to plain reads
    await to_thread.run_sync(fh.seek, offset)
    remaining = count
    while remaining > 0:
        block: bytes = await to_thread.run_sync(fh.read, min(_CHUNK, remaining))
        if not block:
            raise anyio.BrokenResourceError  # the file shrank: the length is now a lie
        await ctx.send(block)
        remaining -= len(block)


async def _directory(ctx: RequestContext, docroot: str, uri: str, st: os.stat_result) -> bool:
    index_files = ctx.service.get("index_files") or []
    for name in index_files if isinstance(index_files, list) else []:
        candidate = f"{docroot}{uri}/{name}"
        cst = await _stat(candidate)
        if cst is not None and stat.S_ISREG(cst.st_mode) and _inside(docroot, candidate):
            return await _file(ctx, candidate, cst)
    if not ctx.service.get("dirindexing"):
        return await ctx.send_simple(200, "Directory listing disabled")
    uri = uri.rstrip("/") + "/"
    path = docroot + uri
    try:
        entries = await to_thread.run_sync(_listing, path)
    except OSError:
        entries = []
    body = "<html><body>"
    for name, is_dir in entries:
        shown = html.escape(name, quote=True)
        href = html.escape(urllib.parse.quote(uri + name, safe="/~!$&()*+,;=:@-._"), quote=True)
        if is_dir:
            body += f"<b><a href='{href}/'>{shown}</a></b><br />\n"
        else:
            body += f"<a href='{href}'>{shown}</a><br />\n"
    body += "</body></html>"
    payload = body.encode("utf-8", "surrogateescape")
    headers = [("Date", _http_date(time.time()))]
    if ctx.server_tokens:
        headers.append(("Server", SERVER_TOKEN))
    keep = ctx.keep_alive
    headers += [("Last-Modified", _http_date(st.st_mtime)), ("Content-Type", "text/html"),
                ("Content-Length", str(len(payload)))]
    headers += keep_alive_headers(keep, ctx.idle_timeout)
    await ctx.send(render_head(200, headers) + (b"" if ctx.head.method == "HEAD" else payload))
    return keep


def _listing(path: str) -> list[tuple[str, bool]]:
    names = sorted([".", ".."] + os.listdir(path))  # Perl's sorted readdir
    return [(name, os.path.isdir(os.path.join(path, name))) for name in names]


async def _serve_multiple(ctx: RequestContext, uri: str) -> bool:
    m = re.match(r"(.+)\?\?(.+)", uri, re.S)
    if m is None or not m.group(1).endswith("/"):
        raise _Refuse(500, "Base directory (before ??) must end in slash.")
    base, listing = m.group(1), re.sub(r"\?.+", "", m.group(2), flags=re.S)
    docroot = _docroot(ctx)
    if docroot is None:
        raise _Refuse(500, "Docroot unconfigured")
    files = listing.split(",")
    if not ctx.service.get("enable_concatenate_get"):
        raise _Refuse(403, "Multiple file serving isn't enabled")
    if len(files) > 100:
        raise _Refuse(403, "Too many files requested")
    if any(re.search(r"(?:\A|/)\.\.(?:/|\Z)", f) or f.startswith("/") for f in files):
        raise _Refuse(403, "Bogus filenames")
    dirbase = docroot + base
    base_st = await _stat(dirbase)
    if base_st is None or not stat.S_ISDIR(base_st.st_mode):
        raise _Refuse(404, "Base directory not a directory")
    stats: list[os.stat_result] = []
    mime: str | None = None
    for name in files:
        fst = await _stat(dirbase + name)
        if fst is None or not stat.S_ISREG(fst.st_mode):
            raise _Refuse(404, "One or more file does not exist")
        if not _inside(docroot, dirbase + name):
            raise _Refuse(403, "Bogus filenames")
        mime = mime or _mime(ctx, name)
        stats.append(fst)
    lastmod = _http_date(max(s.st_mtime for s in stats))
    ims, _ = _ims(ctx.head)
    not_mod = ims == lastmod
    headers: list[tuple[str, str]] = []
    if not not_mod:
        headers.append(("Content-Length", str(sum(s.st_size for s in stats))))
    headers.append(("Date", _http_date(time.time())))
    if ctx.server_tokens:
        headers.append(("Server", SERVER_TOKEN))
    keep = ctx.keep_alive
    headers += [("Last-Modified", lastmod), ("Content-Type", mime or "text/plain")]
    headers += keep_alive_headers(keep, ctx.idle_timeout)
    await ctx.send(render_head(304 if not_mod else 200, headers))
    if ctx.head.method == "HEAD" or not_mod:
        return keep
    for name, fst in zip(files, stats):
        try:
            fh: BinaryIO = await to_thread.run_sync(open, dirbase + name, "rb")
        except OSError:
            return False
        try:
            await _send_file(ctx, fh, 0, fst.st_size)
        finally:
            await to_thread.run_sync(fh.close)
    return keep


# --- PUT / DELETE ----------------------------------------------------------------


def _put_target(ctx: RequestContext) -> tuple[str, str, str]:
    """(docroot, directory path, file name) of a PUT, or a refusal."""
    docroot = _docroot(ctx)
    if docroot is None:
        raise _Refuse(500, "Docroot unconfigured")
    uri = ctx.head.target
    if ".." in uri:
        raise _Refuse(400, "Invalid filename")
    m = _PUT_PATH.fullmatch(uri)
    if m is None:
        raise _Refuse(400, "Invalid filename")
    return docroot, m.group(1) or "", m.group(2)


async def _put(ctx: RequestContext) -> bool:
    service = ctx.service
    if not service.get("enable_put"):
        return await ctx.send_simple(403)
    head = ctx.head
    expected_md5 = head.get("Content-MD5") if service.get("enable_md5") else None
    if not head.chunked:
        if head.content_length is None:
            # Perl reads a missing length as 0 and truncates the file to nothing;
            # an upload that does not say how long it is is refused instead.
            return await ctx.send_simple(411, "A PUT needs a Content-Length or a chunked body.",
                                         keep_alive=False)
        length = head.content_length
        max_put = service.get("max_put_size") or 0
        if isinstance(max_put, int) and max_put and length > max_put:
            return await ctx.send_simple(400, f"Content-length of {length} is invalid.",
                                         keep_alive=False)
    docroot, path, filename = _put_target(ctx)
    min_dirs = service.get("min_put_directory") or 0
    if isinstance(min_dirs, int) and min_dirs:
        elems = [e for e in path.split("/") if e]
        if len(elems) < min_dirs:
            raise _Refuse(400, "Does not meet minimum directory requirement")
        required = docroot + "/" + "/".join(elems[:min_dirs])
        if not await to_thread.run_sync(os.path.isdir, required):
            raise _Refuse(404, "Base directory does not exist")
    directory = docroot + "/" + path
    try:
        await to_thread.run_sync(lambda: os.makedirs(directory, 0o755, exist_ok=True))
    except OSError:
        raise _Refuse(500, "Unable to create directory") from None
    if not _inside(docroot, directory):
        raise _Refuse(403, "Forbidden")
    if head.chunked and re.search(r"\b100-continue\b", head.get("Expect") or ""):
        await ctx.stream.send(b"HTTP/1.1 100 Continue\r\n\r\n")
    fd, temp = await to_thread.run_sync(
        lambda: tempfile.mkstemp(prefix=f".{filename}.", suffix=".tmp", dir=directory))
    done = False
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                async for piece in ctx.body_chunks():
                    digest.update(piece)
                    await to_thread.run_sync(out.write, piece)
            except HttpError as exc:  # chunking error or max_chunked_request_size
                out.close()
                await to_thread.run_sync(_unlink_quietly, temp)  # gone before we answer
                done = True
                await ctx.send_simple(exc.status, keep_alive=False)
                return False
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return False  # the client went away mid-upload: nothing is kept
        if expected_md5 is not None:
            actual = base64.b64encode(digest.digest()).decode().rstrip("=")
            expect = re.sub(r"=+\s*\Z", "", expected_md5)
            if actual != expect:
                await to_thread.run_sync(_unlink_quietly, temp)  # gone before we answer
                done = True
                return await ctx.send_simple(
                    400, f"Content-MD5 mismatch, expected: {expect} actual: {actual}")
        await to_thread.run_sync(os.replace, temp, os.path.join(directory, filename))
        done = True
        return await ctx.send_simple(201 if expected_md5 is not None else 200)
    finally:
        if not done:
            await to_thread.run_sync(_unlink_quietly, temp)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


async def _delete(ctx: RequestContext) -> bool:
    if not ctx.service.get("enable_delete"):
        return await ctx.send_simple(403)
    docroot = _docroot(ctx)
    if docroot is None:
        raise _Refuse(500, "Docroot unconfigured")
    uri = ctx.head.target
    if ".." in uri or not _DELETE_PATH.fullmatch(uri):
        raise _Refuse(400, "Invalid filename")
    path = docroot + "/" + uri
    if not _inside(docroot, os.path.dirname(path)):
        raise _Refuse(403, "Forbidden")
    try:
        await to_thread.run_sync(os.unlink, path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return await ctx.send_simple(404)
        return await ctx.send_simple(400, exc.strerror or str(exc))
    return await ctx.send_simple(204)
