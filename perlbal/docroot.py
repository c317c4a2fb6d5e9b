"""Which file a ``web_server`` request maps to: docroot + path rules + index files, no sockets.

``resolve(service, head, mime)`` answers a GET/HEAD (and says what PUT/DELETE
would do) the way ``perlbal.runtime.webserver`` serves it -- Perl's
ClientHTTPBase ``_serve_request`` -- as a ``FileVerdict``: the status, the
file (or directory listing) chosen, its size, MIME type and byte range, and
the steps taken.  It reads the disk (stat only, never file contents); the
server is meant to call it in a worker thread and then just send what it says,
so that ``perlbal explain`` and the server share the decision.

Path policy (see webserver.py): the target is percent-decoded once (Perl's
``durl``); NUL or backslash -> 400 "Bad characters in URL"; not starting with
``/`` or holding a ``..`` segment -> 403 "Bogus URL"; after symlinks the file
must lie inside the resolved docroot (403 "Forbidden").

Invariants: never opens or lists a file; a verdict with ``status`` 200/206
and ``kind == "file"`` names a regular file inside docroot.
"""

from __future__ import annotations

import email.utils
import functools
import os
import re
import stat
import time
from dataclasses import dataclass, field, replace
from typing import Literal

from perlbal.graph import Service
from perlbal.http import RequestHead, evaluate_range, munge_headers
from perlbal.http.digits import decimal_value

__all__ = ["FileVerdict", "durl", "inside", "mime_type", "request_as_served", "resolve"]

Kind = Literal["file", "listing", "listing_disabled", "concat", "refuse", "put", "delete"]

_PUT_PATH = re.compile(r"((?:/[\w\-.]+)*)/([\w\-.]+)", re.ASCII)
_DELETE_PATH = re.compile(r"(?:/[\w\-.]+)+", re.ASCII)


@dataclass
class FileVerdict:
    kind: Kind
    status: int
    message: str | None = None
    #: file system path sent (file), listed (listing) or written (put/delete)
    path: str | None = None
    #: path relative to docroot, with a leading '/'
    uri: str | None = None
    index_file: str | None = None
    size: int | None = None
    mime: str | None = None
    range: tuple[int, int] | None = None
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: modification time of the file / directory (newest file for concat)
    mtime: float | None = None
    #: the 404 is for a file that does not exist (plugins' *_file_missing hooks)
    missing: bool = False


def durl(text: str) -> str:
    """Perl's Util::durl: %XX decoded (as latin-1 bytes, then read as UTF-8 names)."""
    raw = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)
    return raw.encode("latin-1", "replace").decode("utf-8", "surrogateescape")


_ROOT_TTL = 1.0  # seconds a docroot's resolved path is trusted (deploys swap symlinks)
_real_roots: dict[str, tuple[float, str]] = {}
_O_PATH = getattr(os, "O_PATH", 0)


def _real_root(root: str) -> str:
    now = time.monotonic()
    cached = _real_roots.get(root)
    if cached is not None and cached[0] > now:
        return cached[1]
    real = os.path.realpath(root)
    if len(_real_roots) > 1024:
        _real_roots.clear()
    _real_roots[root] = (now + _ROOT_TTL, real)
    return real


def _real_path(path: str) -> str:
    """The path with every symlink resolved.  On Linux the kernel does it in
    one open: /proc/self/fd names the file actually reached (os.path.realpath
    would lstat every component from Python)."""
    if _O_PATH:
        try:
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        except OSError:
            return os.path.realpath(path)
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = ""
        finally:
            os.close(fd)
        if real.startswith("/") and not real.endswith(" (deleted)"):
            return real
    return os.path.realpath(path)


def inside(root: str, path: str) -> bool:
    """Does ``path``, symlinks resolved, stay within ``root``?"""
    real_root = _real_root(root)
    real = _real_path(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def mime_type(mime: dict[str, str], name: str) -> str | None:
    m = re.search(r"\.(\w+)$", name)
    return mime.get(m.group(1)) if m else None


@functools.lru_cache(maxsize=4096)
def _http_date_of(second: int) -> str:
    return email.utils.formatdate(second, usegmt=True)


def http_date(when: float) -> str:
    """RFC 7231 date; formatted once per second of time (cached)."""
    return _http_date_of(int(when))


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def request_as_served(svc: Service, head: RequestHead) -> RequestHead:
    """The web server applies its own HEADER rules to the request before serving it."""
    rules = svc.headers
    if not (rules.remove or rules.insert):
        return head
    return replace(head, headers=tuple(munge_headers(list(head.headers), rules.remove,
                                                     rules.insert)))


def _refuse(status: int, message: str | None, note: str) -> FileVerdict:
    return FileVerdict("refuse", status, message, notes=[note])


def resolve(svc: Service, head: RequestHead, mime: dict[str, str],
            uri: str | None = None) -> FileVerdict:
    """What the web server answers to ``head`` (already through ``request_as_served``).

    ``uri``: the decoded path to serve instead of ``durl(head.target)`` (a
    plugin's start_serve_request rewrote it: Palimg, AutoRemoveLeadingDir)."""
    docroot = svc.tunables.docroot
    root = docroot if isinstance(docroot, str) and docroot else None
    if head.method in ("GET", "HEAD"):
        return _get(svc, head, root, mime, uri)
    if head.method == "PUT":
        if not svc.tunables.enable_put:
            return _refuse(403, None, "PUT is not enabled (enable_put)")
        if root is None:
            return _refuse(500, "Docroot unconfigured", "no docroot set")
        m = _PUT_PATH.fullmatch(head.target)
        if ".." in head.target or m is None:
            return _refuse(400, "Invalid filename", "PUT path must be /[\\w.-]+ components")
        return FileVerdict("put", 200, path=f"{root}/{m.group(1) or ''}/{m.group(2)}".replace(
            "//", "/"), uri=head.target, notes=["the body would be written atomically"])
    if head.method == "DELETE":
        if not svc.tunables.enable_delete:
            return _refuse(403, None, "DELETE is not enabled (enable_delete)")
        if root is None:
            return _refuse(500, "Docroot unconfigured", "no docroot set")
        if ".." in head.target or not _DELETE_PATH.fullmatch(head.target):
            return _refuse(400, "Invalid filename", "DELETE path must be /[\\w.-]+ components")
        path = root + "/" + head.target
        exists = os.path.exists(path)
        return FileVerdict("delete", 204 if exists else 404, path=path, uri=head.target,
                           notes=["the file exists" if exists else "no such file"])
    return _refuse(400, None, f"the web server answers {head.method} with 400")


def _get(svc: Service, head: RequestHead, root: str | None,
         mime: dict[str, str], decoded: str | None = None) -> FileVerdict:
    uri = durl(head.target) if decoded is None else decoded
    if "\0" in uri or "\\" in uri:
        return _refuse(400, "Bad characters in URL", "NUL or backslash in the decoded path")
    if not uri.startswith("/") or ".." in uri.split("?", 1)[0].split("/"):
        return _refuse(403, "Bogus URL", "the decoded path has a '..' segment "
                       "(or does not start with '/')")
    if "??" in uri:
        return _concat(svc, head, root, uri, mime)
    uri = uri.split("?", 1)[0]
    if root is None:
        return _refuse(500, "Docroot unconfigured", "no docroot set")
    path = root + uri
    st = _stat(path)
    if st is None:
        return FileVerdict("refuse", 404, path=path, uri=uri, notes=[f"{path} does not exist"],
                           missing=True)
    if not inside(root, path):
        return FileVerdict("refuse", 403, "Forbidden", path=path, uri=uri,
                           notes=[f"{path} resolves outside docroot"])
    if stat.S_ISDIR(st.st_mode):
        tried: list[str] = []
        for name in svc.tunables.index_files:
            candidate = f"{root}{uri}/{name}"
            cst = _stat(candidate)
            if cst is not None and stat.S_ISREG(cst.st_mode) and inside(root, candidate):
                verdict = _file(head, candidate, cst, mime)
                verdict.uri, verdict.index_file = uri, str(name)
                verdict.notes[:0] = [f"{uri} is a directory"] + tried + [
                    f"index file '{name}' exists"]
                return verdict
            tried.append(f"index file '{name}' is not there")
        if not svc.tunables.dirindexing:
            return FileVerdict("listing_disabled", 200, "Directory listing disabled", path=path,
                               uri=uri, notes=[f"{uri} is a directory"] + tried +
                               ["dirindexing is off"])
        return FileVerdict("listing", 200, path=path, uri=uri, mime="text/html",
                           notes=[f"{uri} is a directory"] + tried + ["dirindexing is on"],
                           mtime=st.st_mtime)
    verdict = _file(head, path, st, mime)
    verdict.uri = uri
    return verdict


def _ims(head: RequestHead) -> tuple[str, int | None]:
    """If-Modified-Since, with IE's ``; length=N`` taken apart.  A length of
    more digits than any file size (http/digits.py) matches no file: -1."""
    ims = head.get("If-Modified-Since") or ""
    m = re.search(r"; length=([0-9]+)", ims)
    if m is None:
        return ims, None
    length = decimal_value(m.group(1))
    return ims[: m.start()] + ims[m.end():], -1 if length is None else length


def _file(head: RequestHead, path: str, st: os.stat_result,
          mime: dict[str, str]) -> FileVerdict:
    if not stat.S_ISREG(st.st_mode):
        return FileVerdict("refuse", 403, "Forbidden", path=path,
                           notes=["not a regular file"])
    size = st.st_size
    ims, ims_len = _ims(head)
    if ims == http_date(st.st_mtime) and not (ims_len and ims_len != size):
        return FileVerdict("file", 304, path=path, size=size,
                           mime=mime_type(mime, path) or "text/plain", mtime=st.st_mtime,
                           notes=["If-Modified-Since equals the file's Last-Modified"])
    # a suffix range (bytes=-N) is the last N bytes (RFC 9110 section 14.1.2),
    # not Perl's 0-N: curl -r -N, wget and pip's lazy wheels rely on it
    rng = evaluate_range(head.get("Range"), size, perl_suffix_quirk=False)
    verdict = FileVerdict("file", rng.status, path=path, size=size,
                          mime=mime_type(mime, path) or "text/plain", mtime=st.st_mtime)
    if rng.status == 206:
        verdict.range = (rng.start, rng.end)
        verdict.notes.append(f"Range: bytes {rng.start}-{rng.end} of {size}")
    elif rng.status == 416:
        verdict.notes.append(f"Range not satisfiable for a {size}-byte file")
    return verdict


def _concat(svc: Service, head: RequestHead, root: str | None, uri: str,
            mime: dict[str, str]) -> FileVerdict:
    m = re.match(r"(.+)\?\?(.+)", uri, re.S)
    if m is None or not m.group(1).endswith("/"):
        return _refuse(500, "Base directory (before ??) must end in slash.", "concatenated GET")
    base, listing = m.group(1), re.sub(r"\?.+", "", m.group(2), flags=re.S)
    if root is None:
        return _refuse(500, "Docroot unconfigured", "no docroot set")
    files = listing.split(",")
    if not svc.tunables.enable_concatenate_get:
        return _refuse(403, "Multiple file serving isn't enabled", "enable_concatenate_get off")
    if len(files) > 100:
        return _refuse(403, "Too many files requested", "more than 100 files")
    if any(re.search(r"(?:\A|/)\.\.(?:/|\Z)", f) or f.startswith("/") for f in files):
        return _refuse(403, "Bogus filenames", "a file name has '..' or starts with '/'")
    dirbase = root + base
    base_st = _stat(dirbase)
    if base_st is None or not stat.S_ISDIR(base_st.st_mode):
        return _refuse(404, "Base directory not a directory", f"{dirbase} is not a directory")
    stats: list[os.stat_result] = []
    kind: str | None = None
    for name in files:
        fst = _stat(dirbase + name)
        if fst is None or not stat.S_ISREG(fst.st_mode):
            verdict = _refuse(404, "One or more file does not exist", f"{dirbase + name} missing")
            verdict.missing = True
            return verdict
        if not inside(root, dirbase + name):
            return _refuse(403, "Bogus filenames", f"{dirbase + name} is outside docroot")
        kind = kind or mime_type(mime, name)
        stats.append(fst)
    ims, _ = _ims(head)
    newest = max(s.st_mtime for s in stats)
    not_mod = ims == http_date(newest)
    return FileVerdict("concat", 304 if not_mod else 200, path=dirbase, uri=base,
                       size=sum(s.st_size for s in stats), mime=kind or "text/plain",
                       files=[dirbase + f for f in files], mtime=newest)
