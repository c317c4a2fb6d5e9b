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

The PUT directory is checked to resolve inside docroot *before* any missing
parent is created (then created one level at a time, each parent checked).
The file is created with mode 0666 less the umask (0644 under umask 022), as
Perl creates it.

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

import base64
import errno
import hashlib
import html
import logging
import os
import re
import secrets
import time
import urllib.parse
from dataclasses import replace
from typing import BinaryIO

import anyio

from perlbal.docroot import FileVerdict, durl, http_date
from perlbal.http import HttpError, munge_headers
from perlbal.http.responses import (SERVER_TOKEN, file_response_headers, keep_alive_headers,
                                    render_head)
from perlbal.plugins.hooks import (ConcatGetPoststatFileMissing, ConcatGetPoststatPreSend,
                                   HandlePut, Hook, ModifyResponseHeaders, PutWriteout,
                                   StartHttpRequest, StartSendFile,
                                   StartServeRequest, StartWebRequest,
                                   StaticGetPoststatFileMissing, StaticGetPoststatPreSend,
                                   file_size, fire)
from perlbal.runtime.context import RequestContext
from perlbal.runtime.diskio import inline_disk, open_file, resolve_and_read, run_disk, send_file

__all__ = ["handle"]

log = logging.getLogger("perlbal.runtime")

_PUT_PATH = re.compile(r"((?:/[\w\-.]+)*)/([\w\-.]+)", re.ASCII)
_DELETE_PATH = re.compile(r"(?:/[\w\-.]+)+", re.ASCII)


class _Refuse(Exception):
    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.message = message


def _docroot(ctx: RequestContext) -> str | None:
    return ctx.service.tunables.docroot or None


def _inside(root: str, path: str) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


async def handle(ctx: RequestContext) -> bool:
    """Serve one request; True when the client connection may carry another."""
    rules = ctx.service.headers
    if rules.remove or rules.insert:
        ctx.head = replace(ctx.head, headers=tuple(
            munge_headers(list(ctx.head.headers), rules.remove, rules.insert)))
    # plugin hooks, in Perl's ClientHTTP order (Stats counts web_requests here)
    # (no hook objects built for a service without plugins: fire would answer False)
    if ctx.service.plugin_order and (await fire(StartWebRequest(ctx))
                                     or await fire(StartHttpRequest(ctx))):
        return ctx.last_keep_alive
    method = ctx.head.method
    try:
        if method in ("GET", "HEAD"):
            return await _serve(ctx)
        if method == "PUT":
            return await _put(ctx)
        if method == "DELETE":
            return await _delete(ctx)
        return await ctx.send_simple(400)
    except _Refuse as refusal:
        return await ctx.send_simple(refusal.status, refusal.message)


# --- GET / HEAD: docroot.resolve decides, this sends -----------------------------


async def _serve(ctx: RequestContext) -> bool:
    uri = durl(ctx.head.target)
    serve = StartServeRequest(ctx, uri=uri)  # Palimg / AutoRemoveLeadingDir rewrite the path
    if await fire(serve):
        return ctx.last_keep_alive
    # one hop to the disk pool: which file answers, and for a small file on a
    # service without plugins (none can want the open file), its bytes too
    verdict, small, opened = await run_disk(
        inline_disk(ctx), resolve_and_read, ctx.service, ctx.head, ctx.server.graph.mime,
        serve.uri if serve.uri != uri else None, not ctx.service.plugin_order)
    try:
        return await _answer(ctx, serve, verdict, small, opened)
    finally:
        if opened is not None:
            opened.close()  # whatever path the answer took (closing twice is harmless)


async def _answer(ctx: RequestContext, serve: StartServeRequest, verdict: FileVerdict,
                  small: bytes | None, opened: BinaryIO | None) -> bool:
    if verdict.kind == "refuse":
        if verdict.missing:
            missing: Hook = (ConcatGetPoststatFileMissing(ctx) if "??" in serve.uri
                             else StaticGetPoststatFileMissing(ctx, path=verdict.path or ""))
            if await fire(missing):  # LazyCDN's fallback
                return ctx.last_keep_alive
        return await ctx.send_simple(verdict.status, verdict.message)
    if verdict.kind == "listing_disabled":
        return await ctx.send_simple(200, verdict.message)
    if verdict.kind == "listing":
        return await _directory(ctx, verdict)
    if verdict.kind == "concat":
        return await _serve_multiple(ctx, verdict)
    if (verdict.status == 200 and ctx.service.plugin_order
            and await fire(StaticGetPoststatPreSend(ctx, mtime=verdict.mtime or 0))):
        return ctx.last_keep_alive
    return await _file(ctx, verdict, small, opened)


async def _file(ctx: RequestContext, verdict: FileVerdict, small: bytes | None = None,
                opened: BinaryIO | None = None) -> bool:
    head = ctx.head
    path, size, status = verdict.path, verdict.size, verdict.status
    assert path is not None and size is not None
    rng = verdict.range
    keep = ctx.keep_alive
    headers = file_response_headers(
        status, date=http_date(time.time()), last_modified=http_date(verdict.mtime or 0),
        content_type=verdict.mime or "text/plain", size=size,
        range_start=rng[0] if rng else None, range_end=rng[1] if rng else None,
        keep_alive=keep, idle_timeout=ctx.idle_timeout, server_tokens=ctx.server_tokens)
    modify = ModifyResponseHeaders(ctx, status=status, headers=headers)
    if await fire(modify):
        return ctx.last_keep_alive
    status, headers = modify.status, modify.headers
    if head.method == "HEAD" or status in (304, 416):
        await ctx.send(render_head(status, headers))
        return keep
    if small is not None:  # read with the lookup: head and body in one write
        await ctx.send(render_head(status, headers) + small)
        return keep
    offset, count = (rng[0], rng[1] - rng[0] + 1) if rng else (0, size)
    try:
        fh: BinaryIO = (opened if opened is not None
                        else await run_disk(inline_disk(ctx), open_file, path))
    except OSError:
        return False  # Perl closes when a stat'ed file cannot be opened
    try:
        send = StartSendFile(ctx, path=path, fh=fh, status=status, headers=headers,
                             offset=offset, count=count)
        if await fire(send):  # Palimg sends its own bytes (Stats counts files_sent)
            return ctx.last_keep_alive
        await ctx.send(render_head(send.status, send.headers), more=send.count > 0)
        await send_file(ctx, fh, send.offset, send.count)
    finally:
        fh.close()  # closing a regular file does not wait on the disk
    return keep


async def _directory(ctx: RequestContext, verdict: FileVerdict) -> bool:
    uri = (verdict.uri or "/").rstrip("/") + "/"
    path = (verdict.path or "").rstrip("/") + "/"
    try:
        entries = await run_disk(inline_disk(ctx), _listing, path)
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
    headers = [("Date", http_date(time.time()))]
    if ctx.server_tokens:
        headers.append(("Server", SERVER_TOKEN))
    keep = ctx.keep_alive
    headers += [("Last-Modified", http_date(verdict.mtime or 0)), ("Content-Type", "text/html"),
                ("Content-Length", str(len(payload)))]
    headers += keep_alive_headers(keep, ctx.idle_timeout)
    await ctx.send(render_head(200, headers) + (b"" if ctx.head.method == "HEAD" else payload))
    return keep


def _listing(path: str) -> list[tuple[str, bool]]:
    names = sorted([".", ".."] + os.listdir(path))  # Perl's sorted readdir
    return [(name, os.path.isdir(os.path.join(path, name))) for name in names]


async def _serve_multiple(ctx: RequestContext, verdict: FileVerdict) -> bool:
    not_mod = verdict.status == 304
    if not not_mod and await fire(ConcatGetPoststatPreSend(ctx, mtime=verdict.mtime or 0)):
        return ctx.last_keep_alive
    headers: list[tuple[str, str]] = []
    if not not_mod:
        headers.append(("Content-Length", str(verdict.size or 0)))
    headers.append(("Date", http_date(time.time())))
    if ctx.server_tokens:
        headers.append(("Server", SERVER_TOKEN))
    keep = ctx.keep_alive
    headers += [("Last-Modified", http_date(verdict.mtime or 0)),
                ("Content-Type", verdict.mime or "text/plain")]
    headers += keep_alive_headers(keep, ctx.idle_timeout)
    modify = ModifyResponseHeaders(ctx, status=verdict.status, headers=headers)
    if await fire(modify):
        return ctx.last_keep_alive
    await ctx.send(render_head(modify.status, modify.headers))
    if ctx.head.method == "HEAD" or not_mod:
        return keep
    for name in verdict.files:
        try:
            fh: BinaryIO = await run_disk(inline_disk(ctx), open_file, name)
        except OSError:
            return False
        try:
            await send_file(ctx, fh, 0, await run_disk(inline_disk(ctx), file_size, fh))
        finally:
            await run_disk(inline_disk(ctx), fh.close)
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
    if not service.tunables.enable_put:
        return await ctx.send_simple(403)
    head = ctx.head
    expected_md5 = head.get("Content-MD5") if service.tunables.enable_md5 else None
    if not head.chunked:
        if head.content_length is None:
            # Perl reads a missing length as 0 and truncates the file to nothing;
            # an upload that does not say how long it is is refused instead.
            return await ctx.send_simple(411, "A PUT needs a Content-Length or a chunked body.",
                                         keep_alive=False)
        length = head.content_length
        max_put = service.tunables.max_put_size
        if max_put and length > max_put:
            return await ctx.send_simple(400, f"Content-length of {length} is invalid.",
                                         keep_alive=False)
        # Perl's ClientHTTP fires handle_put here, for a PUT with a length only
        # (a chunked one went to handle_put_chunked before)
        if service.plugin_order and await fire(HandlePut(ctx)):
            return ctx.last_keep_alive
    docroot, path, filename = _put_target(ctx)
    min_dirs = service.tunables.min_put_directory
    if min_dirs:
        elems = [e for e in path.split("/") if e]
        if len(elems) < min_dirs:
            raise _Refuse(400, "Does not meet minimum directory requirement")
        required = docroot + "/" + "/".join(elems[:min_dirs])
        if not await run_disk(inline_disk(ctx), os.path.isdir, required):
            raise _Refuse(404, "Base directory does not exist")
    directory = docroot + "/" + path
    target = os.path.join(directory, filename)
    # checked before anything is created: through a symlink that leads out of
    # docroot, not even the missing parent directories may be made
    if not await run_disk(inline_disk(ctx), _inside, docroot, directory):
        raise _Refuse(403, "Forbidden")
    try:
        await run_disk(inline_disk(ctx), _make_directories, docroot, directory)
    except PermissionError:
        raise _Refuse(403, "Forbidden") from None
    except OSError:
        raise _Refuse(500, "Unable to create directory") from None
    # (Expect: 100-continue is answered by ctx.body_chunks when the body is first wanted)
    try:
        fd, temp = await run_disk(inline_disk(ctx), _create_temp, directory, filename)
    except OSError as exc:  # e.g. a file where the directory should be: as Perl's open fails
        log.warning("PUT %s: %s", target, exc.strerror or exc)
        raise _Refuse(500, "Internal error") from None
    done = False
    try:
        digest = hashlib.md5()
        hooked = bool(service.plugin_order)
        with os.fdopen(fd, "wb") as out:
            try:
                async for piece in ctx.body_chunks():
                    if hooked and await fire(PutWriteout(ctx, data=piece, path=temp)):
                        if ctx.response_started:  # it answered (or failed: 500)
                            return False  # the rest of the body is not read: close
                        continue  # the plugin took this piece
                    digest.update(piece)
                    await run_disk(inline_disk(ctx), out.write, piece)
            except HttpError as exc:  # chunking error, or a limit (runtime/bodylimit.py)
                out.close()
                await run_disk(inline_disk(ctx), _unlink_quietly, temp)  # gone before we answer
                done = True
                await ctx.send_simple(exc.status, exc.reason, keep_alive=False)
                return False
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return False  # the client went away mid-upload: nothing is kept
        if expected_md5 is not None:
            actual = base64.b64encode(digest.digest()).decode().rstrip("=")
            expect = re.sub(r"=+\s*\Z", "", expected_md5)
            if actual != expect:
                await run_disk(inline_disk(ctx), _unlink_quietly, temp)  # gone before we answer
                done = True
                return await ctx.send_simple(
                    400, f"Content-MD5 mismatch, expected: {expect} actual: {actual}")
        try:
            await run_disk(inline_disk(ctx), os.replace, temp, target)
        except OSError as exc:  # e.g. the name is a directory: Perl's open fails the same way
            log.warning("PUT %s: %s", target, exc.strerror or exc)
            await run_disk(inline_disk(ctx), _unlink_quietly, temp)  # gone before we answer
            done = True
            return await ctx.send_simple(500, "Internal error")
        done = True
        return await ctx.send_simple(201 if expected_md5 is not None else 200)
    finally:
        if not done:
            await run_disk(inline_disk(ctx), _unlink_quietly, temp)


def _make_directories(docroot: str, directory: str) -> None:
    """``os.makedirs`` one level at a time, each parent checked to lie inside
    docroot before a child is made in it (a symlink swapped in meanwhile is
    caught: PermissionError, answered 403)."""
    parent, missing = directory, []
    while not os.path.isdir(parent):
        parent, name = os.path.split(parent.rstrip("/"))
        if not name:
            break
        missing.append(name)
    for name in reversed(missing):
        if not _inside(docroot, parent):
            raise PermissionError(errno.EACCES, "outside docroot", parent)
        parent = os.path.join(parent, name)
        try:
            os.mkdir(parent, 0o755)
        except FileExistsError:
            pass
    if not _inside(docroot, directory):
        raise PermissionError(errno.EACCES, "outside docroot", directory)


def _create_temp(directory: str, filename: str) -> tuple[int, str]:
    """A new hidden temp file beside the target, created as Perl creates the
    file itself: mode 0666 less the umask (tempfile.mkstemp would make 0600,
    and the renamed upload would keep it), O_EXCL and O_NOFOLLOW."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _attempt in range(100):
        temp = os.path.join(directory, f".{filename}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", directory)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


async def _delete(ctx: RequestContext) -> bool:
    if not ctx.service.tunables.enable_delete:
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
        await run_disk(inline_disk(ctx), os.unlink, path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return await ctx.send_simple(404)
        return await ctx.send_simple(400, exc.strerror or str(exc))
    return await ctx.send_simple(204)
