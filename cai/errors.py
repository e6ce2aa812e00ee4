"""The one error type, and the exit codes it carries to main."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    CONTAINER_NOT_FOUND = 10
    CONTAINER_START_FAILED = 11
    SSH_SETUP_FAILED = 12
    SSH_CONNECT_FAILED = 13
    HOST_KEY_MISMATCH = 14
    CONTAINER_FOREIGN = 15
    INTERRUPTED = 130


class CaiError(Exception):
    """Raised below main; main prints `[ERROR] message`, then each extra line as given.

    `extra` lines carry their own prefix (`[ERROR]   hint`, `[HINT] ...` or plain text) because the
    original mixes those forms and scripts match them.
    """

    def __init__(self, code: int, message: str, *extra: str) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.extra = extra
