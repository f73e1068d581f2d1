"""Errors the pipeline raises. Each message is written for the person who started the job."""

from __future__ import annotations


class PipelineError(Exception):
    """A job cannot go on. `str(error)` is shown to the user as the reason."""

    stage: str = "pipeline"

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail  # longer technical context (trimmed log), kept in the job's events


class UnsafeURLError(PipelineError):
    """A URL is not http(s) or points at a private, loopback or link-local address."""


class FetchError(PipelineError):
    """A URL could not be fetched (timeout, HTTP error, too large)."""


class DatasetError(PipelineError):
    stage = "dataset"


class CodegenError(PipelineError):
    stage = "codegen"


class CodegenUnavailable(CodegenError):
    """The code generator cannot be used now (unreachable, out of quota, bad key)."""


class InvalidCode(CodegenError):
    """Generated code was rejected before it ran (not JSON, missing files, does not parse,
    imports a package the sandbox does not have). `files` keeps what was generated, so a
    repair can show the model its own answer."""

    def __init__(
        self, message: str, *, detail: str = "", files: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.files = files or {}


class SandboxError(PipelineError):
    """The sandbox itself failed (could not start, was killed, ran out of limits)."""


class TrainingError(PipelineError):
    stage = "train"


class DeployError(PipelineError):
    stage = "deploy"


class JobCancelled(PipelineError):
    """Raised inside the runner when someone cancelled the job."""
