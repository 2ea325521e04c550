"""Local tooling, never shipped in the Lambda layer: the AppSync-compatible server over
SQLite (`server`), the demo and its independent truth check (`demo`), the CLI (`cli`) and
terminal rendering (`render`). It depends on the runtime; the runtime never imports it.
"""
