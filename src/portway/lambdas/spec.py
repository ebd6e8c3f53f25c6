"""What the runtime needs to know about one Lambda function, and how a handler string names its code."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_ACCOUNT_ID", "RESERVED_ENVIRONMENT", "FunctionSpec", "parse_handler"]

DEFAULT_ACCOUNT_ID = "123456789012"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Environment variables Lambda sets itself and refuses in a function's configuration.
RESERVED_ENVIRONMENT = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One function: its code (``code_dir`` on ``sys.path``; the handler ``module.attribute``) settings."""

    name: str
    code_dir: Path
    module: str
    attribute: str
    timeout_s: float = 3.0
    memory_mb: int = 128
    environment: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = 4
    region: str = "us-east-1"
    account_id: str = DEFAULT_ACCOUNT_ID

    @property
    def handler(self) -> str:
        return f"{self.module}.{self.attribute}"

    arn: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "arn", f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.name}"
        )


def parse_handler(base_dir: Path, handler: str) -> tuple[Path, str, str]:
    """``'src/app.handler'`` → (base_dir/src, ``'app'``, ``'handler'``), as Lambda reads its Handler setting:
    folders before the last ``/``, then a dotted module path, then the function's name.

    >>> parse_handler(Path("/code"), "src/pkg.app.handler")
    (PosixPath('/code/src'), 'pkg.app', 'handler')

    Raises ValueError naming what is wrong.
    """
    folder, _, dotted = handler.rpartition("/")
    module, _, attribute = dotted.rpartition(".")
    if not module or not attribute:
        raise ValueError(f"handler {handler!r} must be 'path/to/module.function'")
    for part in [*module.split("."), attribute]:
        if not _IDENTIFIER.match(part):
            raise ValueError(f"handler {handler!r}: {part!r} is not a Python identifier")
    return (base_dir / folder if folder else base_dir), module, attribute
