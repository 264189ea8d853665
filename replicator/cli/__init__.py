"""The command line: ``parsers`` builds every command's flags and help; ``main`` parses
the command line and runs the command (``replicator.commands``, or the demo of
``replicator.dev``)."""

from replicator.cli.main import entry, main, parse_settings

__all__ = ["entry", "main", "parse_settings"]
