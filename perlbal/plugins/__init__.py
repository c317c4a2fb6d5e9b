"""The plugin API and registry.

A plugin is a ``Plugin`` subclass registered under its Perl name ("Vhosts",
"AccessControl", ...).  Everything it adds to the language goes through the
same extension points the core uses:
- ``commands``: ``SyntaxExtension``s that become grammar alternatives (VHOST,
  ACCESS, INCLUDE...), handled by ``Plugin.command``;
- ``params``: service parameters declared with ``params.Param`` (``SET x = y``
  works, check validates them, dumpconfig and the docs list them);
- ``roles``: extra service roles (EchoService's ``echo``).

Stock plugins live in this package, one module each.  Third-party plugins are
found through the ``perlbal.plugins`` entry-point group: the entry point loads a
``Plugin`` subclass.  A plugin registering a name or command twice fails loudly.

The entry points are read the first time something asks for a plugin or a
command the stock set does not have, or for the whole list (``names``,
``syntax_extensions``): importing importlib.metadata and scanning the installed
distributions is about a tenth of a small ``perlbal check``, and a config that
uses only stock plugins never needs it.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Callable, ClassVar, Iterable

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import SyntaxExtension
from perlbal.params import Param

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter

log = logging.getLogger("perlbal.plugins")


class PluginError(Exception):
    """A plugin refused something; the text becomes the console's ERROR line."""


class Plugin:
    """Base class: override what the plugin needs.  Instances are stateless;
    per-service configuration lives in ``Service.extra``."""

    name: ClassVar[str] = ""
    commands: ClassVar[tuple[SyntaxExtension, ...]] = ()
    params: ClassVar[tuple[Param, ...]] = ()
    roles: ClassVar[tuple[str, ...]] = ()

    def load(self, it: "Interpreter") -> None:
        """LOAD: the plugin becomes available (its commands start to work)."""

    def unload(self, it: "Interpreter") -> None:
        """UNLOAD: undo load; services keep their chains as Perl does."""

    def register(self, it: "Interpreter", svc: Service) -> None:
        """``SET plugins`` put this plugin on ``svc``; raise PluginError to refuse."""

    def unregister(self, it: "Interpreter", svc: Service) -> None:
        """The plugin was taken off ``svc`` (``SET plugins`` again)."""

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        """Run one of this plugin's commands; reply through ``call``."""
        return call.err(f"unknown command: {node.keyword}")

    def setter(self, it: "Interpreter", svc: Service, key: str, value: str,
               call: "Call") -> bool | None:
        """``SET svc.<Plugin>.key = value``; None when the plugin has no such key."""
        return None

    def reload_lines(self, svc: Service, running: Service) -> list[str]:
        """Console lines a SIGHUP reload runs on a service with this plugin because a
        file the plugin read says otherwise now (its own reload command); [] when
        none.  ``svc`` is the service as the new file describes it, ``running`` the
        same service in the running server (what the plugin read then).  The lines
        are rehearsed like every reload line: a file that cannot be read refuses
        the reload."""
        return []

    def dumpconfig(self, it: "Interpreter", svc: Service) -> list[str] | None:
        """Config lines that rebuild this plugin's state on ``svc``; None: cannot."""
        return None


#: methods a plugin may define besides hooks: the typed start_http_request
#: decision (routing) and a plugin role's connection server (EchoService)
PLUGIN_METHODS = frozenset({"decide", "serve_connection"})


def _check_hook_names(plugin: Plugin) -> None:
    """Refuse a public method that is neither a hook nor part of the plugin API:
    a misspelt hook would otherwise never fire (mitmproxy's addon manager does
    the same)."""
    import difflib

    from perlbal.plugins.hooks import ALL_HOOKS

    known = {hook.name for hook in ALL_HOOKS} | PLUGIN_METHODS
    base = {name for name in dir(Plugin) if not name.startswith("_")}
    for name in dir(type(plugin)):
        if name.startswith("_") or name in base or name in known:
            continue
        if not callable(getattr(plugin, name, None)):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"plugin '{plugin.name}': method '{name}' is no hook{hint}")


class PluginRegistry:
    """The plugins a server or a check knows, by name and by command keyword.

    ``discover``, if given, finds more plugins (the entry points); it is called
    once, the first time a lookup misses or the whole list is asked for."""

    def __init__(self, discover: Callable[[], Iterable[Plugin]] | None = None) -> None:
        self._plugins: dict[str, Plugin] = {}
        self._command_owner: dict[str, str] = {}
        self._discover = discover

    def add(self, plugin: Plugin) -> None:
        if not plugin.name:
            raise ValueError(f"plugin {type(plugin).__name__} has no name")
        _check_hook_names(plugin)
        if plugin.name in self._plugins:
            raise ValueError(f"plugin '{plugin.name}' registered twice")
        for ext in plugin.commands:
            if ext.keyword in self._command_owner:
                raise ValueError(f"command '{ext.keyword}' registered twice")
            self._command_owner[ext.keyword] = plugin.name
        self._plugins[plugin.name] = plugin

    def discover(self) -> None:
        """Add what ``discover`` finds, once (later calls do nothing)."""
        found, self._discover = self._discover, None
        if found is None:
            return
        for plugin in found():
            try:
                self.add(plugin)
            except ValueError:  # a misspelt hook, a name taken: that plugin only
                log.exception("could not add plugin %s", type(plugin).__name__)

    def find(self, name: str) -> Plugin | None:
        found = self.find_first((name,))
        return None if found is None else found[1]

    def find_first(self, names: Iterable[str]) -> tuple[str, Plugin] | None:
        """The first of ``names`` that names a plugin, with it: the plugins known
        so far are asked first, so a stock plugin is found without reading the
        entry points (a third-party plugin cannot take a stock plugin's name in
        another case)."""
        names = list(names)
        for name in names:
            plugin = self._plugins.get(name)
            if plugin is not None:
                return name, plugin
        if self._discover is not None:
            self.discover()
            return self.find_first(names)
        return None

    def get(self, name: str) -> Plugin:
        plugin = self.find(name)
        if plugin is None:
            raise KeyError(name)
        return plugin

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._plugins)

    def syntax_extensions(self, *, discover: bool = True) -> list[SyntaxExtension]:
        """Every plugin's commands; ``discover=False``: only those of the plugins
        known so far (the parser asks for the rest when a line needs them)."""
        if discover:
            self.discover()
        return [ext for p in self._plugins.values() for ext in p.commands]

    def command_owner(self, keyword: str) -> str | None:
        owner = self._command_owner.get(keyword)
        if owner is None and self._discover is not None:
            self.discover()
            owner = self._command_owner.get(keyword)
        return owner

    def loaded_params(self, loaded: Iterable[str]) -> list[Param]:
        return [p for name in loaded if name in self._plugins
                for p in self._plugins[name].params]

    def service_param(self, key: str, loaded: Iterable[str]) -> Param | None:
        for param in self.loaded_params(loaded):
            if param.name == key:
                return param
        return None

    def roles_of_loaded(self, loaded: Iterable[str]) -> set[str]:
        return {r for name in loaded if name in self._plugins for r in self._plugins[name].roles}

    def plugin_setter(self, it: "Interpreter", svc: Service, plugin: str, key: str,
                      value: str, call: "Call") -> bool | None:
        proper = it.graph.plugins_loaded.get(plugin.lower())
        if proper is None or proper not in svc.plugin_order:
            return None
        return self._plugins[proper].setter(it, svc, key, value, call)


STOCK_MODULES = ("vhosts", "vpaths", "accesscontrol", "include", "redirect", "highpri", "stats",
                 "queues", "palimg", "throttle", "xffextras", "notmodified",
                 "maxcontentlength", "autoremoveleadingdir", "echoservice", "lazycdn",
                 "flvstreaming", "cgilike")


def default_plugin_registry() -> PluginRegistry:
    """Stock plugins now; every ``perlbal.plugins`` entry point that loads, when
    first needed (see the module's docstring)."""
    registry = PluginRegistry(discover=entry_point_plugins)
    for module_name in STOCK_MODULES:
        module = importlib.import_module(f"perlbal.plugins.{module_name}")
        registry.add(module.PLUGIN)
    return registry


def entry_point_plugins() -> list[Plugin]:
    """An instance of each ``perlbal.plugins`` entry point's class; one that
    fails to load or to instantiate is logged and left out, as a broken
    third-party plugin must not stop the server."""
    from importlib import metadata

    plugins: list[Plugin] = []
    for entry in metadata.entry_points(group="perlbal.plugins"):
        try:
            plugins.append(entry.load()())
        except Exception:
            log.exception("could not load plugin entry point %s", entry.name)
    return plugins
