"""``perlbal lsp``: a language server for perlbal.conf over stdio, on pygls.

pygls is an optional extra (``pip install 'perlbal[lsp]'``); the features are
the pure functions of ``perlbal.lsp_features``, so they work the same for
every editor.  Diagnostics are published when a document is opened, changed
or saved; completion, hover, go to definition, document symbols and
"did you mean" quick fixes are answered on request.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

__all__ = ["main"]


def _server() -> Any:
    from lsprotocol import types as t
    from pygls.lsp.server import LanguageServer

    from perlbal import __version__
    from perlbal import lsp_features as f

    server = LanguageServer("perlbal", __version__)
    _SEVERITY = {"error": t.DiagnosticSeverity.Error, "warning": t.DiagnosticSeverity.Warning,
                 "note": t.DiagnosticSeverity.Information}

    def publish(uri: str) -> None:
        document = server.workspace.get_text_document(uri)
        items = [t.Diagnostic(
            range=t.Range(start=t.Position(line=d.line, character=d.column),
                          end=t.Position(line=d.line, character=d.end_column)),
            message=d.message, source="perlbal check",
            severity=_SEVERITY[d.severity])
            for d in f.diagnostics(document.source, document.path or "perlbal.conf")]
        server.text_document_publish_diagnostics(
            t.PublishDiagnosticsParams(uri=uri, diagnostics=items, version=document.version))

    @server.feature(t.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: t.DidOpenTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: t.DidChangeTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: t.DidSaveTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(t.TEXT_DOCUMENT_COMPLETION,
                    t.CompletionOptions(trigger_characters=[" ", ".", "="]))
    def completion(params: t.CompletionParams) -> t.CompletionList:
        document = server.workspace.get_text_document(params.text_document.uri)
        found = f.completions(document.source, params.position.line, params.position.character)
        return t.CompletionList(is_incomplete=False, items=[
            t.CompletionItem(label=c.label, detail=c.detail or None,
                             documentation=(t.MarkupContent(kind=t.MarkupKind.Markdown,
                                                            value=c.documentation)
                                            if c.documentation else None))
            for c in found])

    @server.feature(t.TEXT_DOCUMENT_HOVER)
    def hover(params: t.HoverParams) -> t.Hover | None:
        document = server.workspace.get_text_document(params.text_document.uri)
        text = f.hover(document.source, params.position.line, params.position.character)
        if text is None:
            return None
        return t.Hover(contents=t.MarkupContent(kind=t.MarkupKind.Markdown, value=text))

    @server.feature(t.TEXT_DOCUMENT_DEFINITION)
    def definition(params: t.DefinitionParams) -> t.Location | None:
        document = server.workspace.get_text_document(params.text_document.uri)
        found = f.definition(document.source, params.position.line, params.position.character)
        if found is None:
            return None
        return t.Location(uri=params.text_document.uri, range=t.Range(
            start=t.Position(line=found.line, character=found.column),
            end=t.Position(line=found.line, character=found.end_column)))

    @server.feature(t.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def document_symbols(params: t.DocumentSymbolParams) -> list[t.DocumentSymbol]:
        document = server.workspace.get_text_document(params.text_document.uri)
        lines = document.source.splitlines()
        out = []
        for symbol in f.symbols(document.source):
            width = len(lines[symbol.line]) if symbol.line < len(lines) else 0
            span = t.Range(start=t.Position(line=symbol.line, character=0),
                           end=t.Position(line=symbol.line, character=width))
            out.append(t.DocumentSymbol(
                name=symbol.name, detail=symbol.role or symbol.kind, range=span,
                selection_range=span,
                kind=t.SymbolKind.Class if symbol.kind == "service" else t.SymbolKind.Array))
        return out

    @server.feature(t.TEXT_DOCUMENT_CODE_ACTION)
    def code_actions(params: t.CodeActionParams) -> list[t.CodeAction]:
        actions = []
        for diag in params.context.diagnostics:
            for hint in f.did_you_mean_fixes(diag.message):
                actions.append(t.CodeAction(
                    title=f"Change to '{hint}'", kind=t.CodeActionKind.QuickFix,
                    diagnostics=[diag], edit=t.WorkspaceEdit(changes={
                        params.text_document.uri: [t.TextEdit(range=diag.range,
                                                              new_text=hint)]})))
        return actions

    return server


def main(argv: Sequence[str]) -> int:
    if list(argv) not in ([], ["--stdio"]):
        print("usage: perlbal lsp [--stdio]   (a language server on stdin/stdout)",
              file=sys.stderr)
        return 2
    try:
        server = _server()
    except ImportError:
        print("perlbal lsp needs pygls: pip install -e '.[lsp]' in the perlbal checkout "
              "(or pip install 'pygls>=2.0')", file=sys.stderr)
        return 2
    server.start_io()
    return 0
