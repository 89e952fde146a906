"""The errors shardsift reports to users: one line, naming the file, column, key or value.

Exit codes: 2 for usage and config errors, 1 for data errors (see DESIGN.md).
"""
from __future__ import annotations


class ShardsiftError(Exception):
    """Base class; ``str(err)`` is the one line the CLI prints."""

    exit_code = 1


class ConfigError(ShardsiftError):
    """A bad config key, type or value, or a bad command-line usage."""

    exit_code = 2


class UsageError(ConfigError):
    """The command line asks for something that cannot be done (e.g. output exists)."""


class DataError(ShardsiftError):
    """Input data that cannot be processed: missing or corrupt files, bad columns, bad text."""

    exit_code = 1


class TaskError(ShardsiftError):
    """A shard task failed; names the shard and carries the original error text."""

    exit_code = 1


def missing_file(err: FileNotFoundError, where: str = "") -> DataError:
    """A file that is not there, as one line naming it. A DataError: retrying the task or rerunning
    the command finds the same nothing, so neither is offered."""
    name = err.filename or (err.args[0] if len(err.args) == 1 else "")
    text = f"{name}: file not found" if name else f"file not found ({str(err).strip().splitlines()[0]})"
    return DataError(f"{where}: {text}" if where else text)
