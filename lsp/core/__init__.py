"""The completion core: from a buffer and a cursor to a verified suggestion (no pygls).

The language server, ``apprentice complete`` and ``apprentice eval`` all run this code; the
protocol layer (``lsp.server``) only converts to and from LSP types around it.
"""
