"""perlbal lsp, driven over stdio with JSON-RPC as an editor drives it:
initialize, didOpen with a typo, publishDiagnostics at the right line,
completion after "SET buf", hover on buffer_size, go to definition, document
symbols, a did-you-mean quick fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import pytest

pytest.importorskip("pygls")

ROOT = Path(__file__).resolve().parents[2]
URI = "file:///tmp/site/perlbal.conf"
TEXT = """CREATE POOL app
  POOL app ADD 127.0.0.1:8080

CREATE SERVICE web
  SET role = reverse_proxy
  SET listen = 127.0.0.1:8000
  SET pool = app
  SET persist_clinet = on
  SET buf
  SET buffer_size = 64k
ENABLE web
"""


class Client:
    def __init__(self, *more_paths: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *more_paths]))
        self.proc = subprocess.Popen([sys.executable, "-m", "perlbal.cli", "lsp"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.messages: "Queue[dict[str, Any]]" = Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            headers: dict[str, str] = {}
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.proc.stdout.read(int(headers["content-length"]))
            self.messages.put(json.loads(body))

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> Any:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        return self.wait(lambda m: m.get("id") == self.next_id)["result"]

    def wait(self, match: Any, timeout: float = 30) -> dict[str, Any]:
        while True:
            try:
                message = self.messages.get(timeout=timeout)
            except Empty:
                raise AssertionError("no such message from the server") from None
            if match(message):
                return message

    def close(self) -> None:
        try:
            self.request("shutdown", {})
            self.send({"method": "exit"})
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def client() -> Any:
    lsp = Client()
    lsp.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    lsp.send({"method": "initialized", "params": {}})
    yield lsp
    lsp.close()


def _at(line: int, character: int) -> dict[str, Any]:
    return {"textDocument": {"uri": URI}, "position": {"line": line, "character": character}}


def test_diagnostics_and_quick_fix(client: Client) -> None:
    client.send({"method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": URI, "languageId": "perlbal", "version": 1, "text": TEXT}}})
    published = client.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics")
    diagnostics = published["params"]["diagnostics"]
    typo = [d for d in diagnostics if "persist_clinet" in d["message"]]
    assert typo and typo[0]["range"]["start"]["line"] == 7  # 0-based: line 8
    assert typo[0]["severity"] == 1 and "persist_client" in typo[0]["message"]
    actions = client.request("textDocument/codeAction", {
        "textDocument": {"uri": URI}, "range": typo[0]["range"],
        "context": {"diagnostics": typo}})
    edits = actions[0]["edit"]["changes"][URI]
    assert edits[0]["newText"] == "persist_client"
    assert edits[0]["range"]["start"] == {"line": 7, "character": 6}


def test_completion_hover_definition_symbols(client: Client) -> None:
    items = client.request("textDocument/completion", _at(8, 9))["items"]
    labels = {item["label"] for item in items}
    assert {"buffer_size", "buffer_uploads", "buffer_backend_connect"} <= labels
    assert "docroot" not in labels  # a web_server parameter, not a reverse_proxy's
    values = client.request("textDocument/completion", _at(6, 13))["items"]
    assert [v["label"] for v in values] == ["app"]  # pools the file creates
    hover = client.request("textDocument/hover", _at(9, 8))
    text = hover["contents"]["value"]
    assert "buffer_size" in text and "default '256k'" in text and "live" in text
    where = client.request("textDocument/definition", _at(6, 14))
    assert where["range"]["start"]["line"] == 0  # SET pool = app -> CREATE POOL app
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": URI}})
    assert [(s["name"], s["detail"]) for s in symbols] == [("app", "pool"),
                                                           ("web", "reverse_proxy")]


def test_textmate_grammar_is_current_and_highlights() -> None:
    import re

    from perlbal.textmate import grammar, render

    committed = (ROOT / "docs" / "editors" / "perlbal.tmLanguage.json").read_text()
    assert committed == render(), "stale: python -m perlbal.textmate docs/editors/perlbal.tmLanguage.json"
    patterns = {p["name"]: p["match"] for p in grammar()["patterns"]}  # type: ignore[attr-defined]
    line = "  SET web.buffer_size = 256k  # note"
    assert re.search(patterns["keyword.control.perlbal"], line)
    assert re.search(patterns["variable.parameter.perlbal"], line).group(1) == "buffer_size"
    assert re.search(patterns["comment.line.number-sign.perlbal"], line).group(0) == "# note"
    assert not re.search(patterns["variable.parameter.perlbal"], "  SET web.bufer_size = 1")
