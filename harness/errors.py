"""User-facing errors: the CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class HarnessError(Exception):
    """An error caused by the user's input (config, data, arguments), not by a bug."""

    exit_code = 2


class ConfigError(HarnessError):
    """The YAML or a command-line override is invalid. The message names the key path."""


class DataError(HarnessError):
    """A data file is malformed. The message names file, line and field."""

    def __init__(self, message: str, *, path: object = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")
        self.path = path
        self.line = line
        self.field = field
