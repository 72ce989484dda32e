"""The language server: LSP protocol handling (pygls) and the services behind it.

Documents and their sync, completions and code actions, the model engine, background
indexing, file watching, status and progress notifications.
"""
