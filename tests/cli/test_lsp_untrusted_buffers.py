"""``perlbal lsp`` on a buffer an editor opened from anywhere: the text is not trusted.

#24 item 8: ``INCLUDE = /dev/stdin`` made the language server read its own
JSON-RPC input and never answer again; now the buffer gets a diagnostic at the
INCLUDE line and the server keeps answering.
#24 item 9: ``PERLREQUIRE = module`` imported (ran) the module on every
keystroke; now the buffer gets a note saying where the module would be found,
and nothing of it runs.  (check and the server: tests/check/test_perlrequire.py)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.check.test_perlrequire import PROBES, write_probes
from tests.cli.test_lsp import Client

pytest.importorskip("pygls")

URI = "file:///tmp/site/untrusted.conf"
WEB = ("CREATE SERVICE w\n  SET role = web_server\n  SET docroot = /tmp\n"
       "  SET listen = 127.0.0.1:8089\nENABLE w\n")


def _open(client: Client, text: str, version: int = 1) -> list[dict[str, Any]]:
    client.send({"method": "textDocument/didOpen" if version == 1 else
                 "textDocument/didChange", "params": {
                     "textDocument": {"uri": URI, "languageId": "perlbal", "version": version,
                                      **({"text": text} if version == 1 else {})},
                     **({} if version == 1 else {"contentChanges": [{"text": text}]})}})
    published = client.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                            and m["params"]["uri"] == URI
                            and m["params"].get("version") == version)
    return published["params"]["diagnostics"]  # type: ignore[no-any-return]


def _start(*paths: str) -> Client:
    lsp = Client(*paths)
    lsp.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    lsp.send({"method": "initialized", "params": {}})
    return lsp


def test_include_of_its_own_stdin_is_a_diagnostic_and_the_server_goes_on() -> None:
    lsp = _start()
    try:
        found = _open(lsp, "LOAD Include\nINCLUDE = /dev/stdin\n" + WEB)
        [diag] = [d for d in found if d["severity"] == 1]
        assert diag["range"]["start"] == {"line": 1, "character": 10}
        assert diag["message"].startswith("Error opening config file (/dev/stdin): a FIFO "
                                          "(named pipe), not a regular file")
        # still answering: the next edit is checked and a hover is answered
        again = _open(lsp, "LOAD Include\nINCLUDE = /dev/zero\n" + WEB, version=2)
        assert [d["message"] for d in again if d["severity"] == 1] == [
            "Error opening config file (/dev/zero): a character device, not a regular file"]
        hover = lsp.request("textDocument/hover", {"textDocument": {"uri": URI},
                                                   "position": {"line": 3, "character": 8}})
        assert "role" in hover["contents"]["value"]
    finally:
        lsp.close()


def test_perlrequire_in_a_buffer_runs_nothing(tmp_path: Path) -> None:
    write_probes(tmp_path)
    lsp = _start(str(tmp_path))
    try:
        text = "LOAD Cgilike\n" + "".join(f"PERLREQUIRE = {name}\n" for name in PROBES) + WEB
        found = _open(lsp, text)
        notes = [d for d in found if d["severity"] == 3]
        assert [d["range"]["start"]["line"] for d in notes] == [1, 2]
        assert notes[0]["message"] == (
            f"PERLREQUIRE = perlbal_probe_mod: the server imports perlbal_probe_mod from "
            f"{tmp_path}/perlbal_probe_mod.py when it runs this line; a dry run does not run it")
        assert f"{tmp_path}/perlbal_probe_pkg/sub.py" in notes[1]["message"]
        _open(lsp, text + "\n", version=2)  # another keystroke
        assert list(tmp_path.glob("imported-*")) == []
    finally:
        lsp.close()
