"""What the E2B SDK raises, turned into reasons for the person who started the job.

The SDK maps most failures to its own exceptions. Some pass through as they are
(.venv/.../e2b/envd/rpc.py `handle_rpc_exception_with_health`, e2b/envd/api.py): a transport
`connectrpc.errors.ConnectError` while the sandbox still answers its health probe, httpx's
transport errors and timeouts (an in-memory request past its deadline is `httpx.ReadTimeout`),
and a plain `Exception("Command ended without an end event")` from `CommandHandle.wait()`
(e2b/sandbox_sync/commands/command_handle.py) when a command's stream closes early.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from connectrpc.errors import ConnectError
from e2b_code_interpreter import (
    AuthenticationException,
    NotFoundException,
    RateLimitException,
    SandboxException,
    SandboxNotRunningException,
    SandboxUnreachableException,
    ServiceBusyException,
    TimeoutException,
)

from pipeline.errors import SandboxError
from pipeline.sandbox.base import SandboxGone

AUTH_REFUSED = "E2B refused the API key (check E2B_API_KEY)"
RATE_LIMITED = "E2B's rate or concurrency limit was reached; try again later"
BUSY = "E2B has no capacity for a sandbox right now; try again later"
GONE = "the E2B sandbox is gone (expired or killed)"
APP_GONE = "the app is gone: its E2B sandbox expired or was killed"  # extending by id
UNREACHABLE = "the E2B sandbox could not be reached"
START_TIMEOUT = "E2B did not start a sandbox in time"
_NO_END_EVENT = "without an end event"

# What the SDK raises: its own errors (AuthenticationException and ServiceBusyException are
# not SandboxExceptions) and the transport errors that slip past its mapping.
SDK_ERRORS: tuple[type[BaseException], ...] = (
    SandboxException,
    AuthenticationException,
    ServiceBusyException,
    ConnectError,
    httpx.HTTPError,
    OSError,
)


def short(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:200]


def stream_lost(error: BaseException) -> bool:
    """The connection to the sandbox broke: the sandbox itself may be fine."""
    return isinstance(error, ConnectError) or (
        type(error) is Exception and _NO_END_EVENT in str(error)
    )


def translate(error: BaseException, action: str) -> SandboxError:
    """An SDK error as a message for the person who started the job; the SDK's text is detail."""
    if isinstance(error, AuthenticationException):
        message = AUTH_REFUSED
    elif isinstance(error, RateLimitException) or getattr(error, "status_code", None) == 429:
        message = RATE_LIMITED
    elif isinstance(error, ServiceBusyException):
        message = BUSY
    elif isinstance(error, SandboxNotRunningException | NotFoundException):
        message = GONE  # NotFoundException covers SandboxNotFoundException (the API's 404)
    elif isinstance(error, SandboxUnreachableException):
        message = UNREACHABLE
    elif isinstance(error, TimeoutException | httpx.TimeoutException):
        message = f"E2B did not answer in time while trying to {action}"
    elif stream_lost(error):
        message = f"the connection to the E2B sandbox broke while trying to {action}"
    elif isinstance(error, httpx.HTTPError | OSError):
        message = f"could not reach E2B to {action}"
    else:
        message = f"E2B could not {action} ({short(error)})"
    kind = SandboxGone if message == GONE else SandboxError  # gone: a caller records the end
    return kind(message, detail=f"{type(error).__name__}: {error}")


@contextmanager
def sdk_errors(action: str) -> Iterator[None]:
    try:
        yield
    except SDK_ERRORS as error:
        raise translate(error, action) from error


def retryable(error: BaseException) -> bool:
    """Rate and concurrency limits (429) and a busy service (503) pass with time."""
    return isinstance(error, RateLimitException | ServiceBusyException) or (
        getattr(error, "status_code", None) == 429
    )
