"""Import, before ``SERVER user`` drops root, every module the server may need later.

Python imports lazily in many places: our role handlers and plugins are
imported on first use (``clientconn.handler_for``, ``routing._decider``,
``LOAD`` on the console), anyio resolves most of its names on first access
and imports its event-loop backend inside ``anyio.run``, and a few standard
modules are only imported by the code path that needs them.  When the
interpreter or the package lives where the unprivileged user cannot read
(a venv under /root, a 0700 install directory), each of those first uses
would fail with ModuleNotFoundError after the drop: the first request of a
role answers nothing, or the event loop never starts.

``preload_modules()`` therefore imports the whole ``perlbal`` package (small:
a few dozen modules), resolves anyio's lazy names, imports its asyncio
backend, and reads the management web UI's static files into memory.
Invariant: a module that fails to import here is skipped (it would fail the
same way later, where the caller already handles it); nothing is executed
beyond module bodies, which only define things.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from types import ModuleType

__all__ = ["preload_modules"]

log = logging.getLogger("perlbal.runtime")

#: packages imported in full, every submodule
_PACKAGES = ("perlbal",)
#: modules whose lazily resolved attributes are all resolved
_LAZY = ("anyio", "anyio.abc", "anyio.streams", "anyio.lowlevel")
#: single modules imported on first use elsewhere (by us or by the library)
_MODULES = (
    "anyio._backends._asyncio", "anyio.to_thread", "anyio.streams.tls", "anyio.streams.memory",
    "anyio.streams.stapled", "anyio.streams.buffered", "concurrent.futures.thread",
    "encodings.idna", "encodings.latin_1", "encodings.ascii", "encodings.utf_8",
    "ctypes", "inspect", "difflib", "ipaddress", "json", "ssl", "uvloop",
    "email.utils", "http.client", "mimetypes", "zlib", "hashlib", "base64",
)
#: not imported: command-line front ends and test helpers nobody runs in a server
_SKIP = ("perlbal.cli", "perlbal.__main__")


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception:  # optional (uvloop) or broken: it fails later just the same
        log.debug("preload: %s not imported", name)
        return None


def _resolve_lazy(module: ModuleType) -> None:
    for name in dir(module):
        if name.startswith("_"):
            continue
        try:
            getattr(module, name)
        except Exception:
            log.debug("preload: %s.%s not resolved", module.__name__, name)


def preload_modules() -> int:
    """Import everything listed above; returns how many modules are loaded now."""
    for package_name in _PACKAGES:
        package = _import(package_name)
        path = getattr(package, "__path__", None)
        if path is None:
            continue
        for info in pkgutil.walk_packages(path, prefix=f"{package_name}."):
            if info.name not in _SKIP and not info.name.endswith("__main__"):
                _import(info.name)
    for name in _MODULES:
        _import(name)
    for name in _LAZY:
        module = _import(name)
        if module is not None:
            _resolve_lazy(module)
    from perlbal.runtime import management

    management.cache_webui()  # read as files later, through importlib.resources
    return len(sys.modules)
