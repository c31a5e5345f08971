"""The one exception a config problem raises, worded for an operator."""

from __future__ import annotations


class ConfigError(Exception):
    """A config that cannot be used; `str()` is one line per problem, ready for an operator."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems  # "LINE: key.path: what" where the line is known
        super().__init__("\n".join(
            f"{path}:{p}" if p[:1].isdigit() else f"{path}: {p}" for p in problems))
