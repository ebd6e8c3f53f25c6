"""Problems found in definition files, each naming its file and JSON path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DefinitionError", "DefinitionErrors", "Problem", "json_path"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem: where it is and what is wrong, printable on one line."""

    file: Path
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else str(self.file)
        return f"{where}: {self.message}"


class DefinitionError(Exception):
    """Raised for a single problem while loading."""

    def __init__(self, file: Path, path: str, message: str) -> None:
        super().__init__(str(Problem(file, path, message)))
        self.problem = Problem(file, path, message)


class DefinitionErrors(Exception):
    """Every problem found in a load, so `portway check` can print them all at once."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def json_path(*parts: str | int) -> str:
    """Build a JSONPath like ``$.paths['/items/{id}'].get``: identifiers dotted, anything else quoted."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum() and not part[:1].isdigit():
            out += f".{part}"
        else:
            escaped = part.replace("\\", "\\\\").replace("'", "\\'")
            out += f"['{escaped}']"
    return out
