"""Code generation stage: get code that passes the checks, repairing or falling back.

A generator that can repair (Groq) is shown its own failures, up to `max_attempts` answers
in all. When it cannot be reached, or its attempts run out, the job falls back to the
offline template and says so, rather than failing.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.codegen.base import CodeFailure, CodeGenerator, GeneratedCode, Resource, TaskSpec
from pipeline.codegen.checks import check_code
from pipeline.errors import CodegenError, CodegenUnavailable, InvalidCode
from pipeline.events import EventKind

Say = Callable[[EventKind, str], None]


class CodeAuthor:
    def __init__(
        self,
        primary: CodeGenerator,
        *,
        fallback: CodeGenerator | None,
        max_attempts: int,
        say: Say,
    ) -> None:
        self.generator = primary
        self.fallback = fallback
        self.max_attempts = max_attempts
        self.say = say
        self.attempts = 0  # answers from the current (repairing) generator
        self.previous: GeneratedCode | None = None

    @property
    def name(self) -> str:
        return self.generator.name

    def can_retry(self) -> bool:
        """After code failed to train or deploy: is there anything left to try?

        Only a repairing generator gets another go (a repair, or once its attempts run
        out, the fallback); a failure of fixed code such as the template's is final.
        """
        return self.generator.can_repair

    def write(
        self, spec: TaskSpec, resources: list[Resource], failure: CodeFailure | None = None
    ) -> GeneratedCode:
        while True:
            if self.generator.can_repair and self.attempts >= self.max_attempts:
                reason = f"{self.name}'s code still failed after {self.attempts} attempts"
                if not self._can_fall_back():
                    raise CodegenError(reason)
                self._fall_back(reason)
                failure = None
            try:
                code = self._ask(spec, resources, failure)
                check_code(code.files, code.requirements)
            except CodegenUnavailable as error:
                if not self._can_fall_back():
                    raise
                self._fall_back(error.message)
                failure = None
                continue
            except InvalidCode as error:
                if not self.generator.can_repair:
                    raise
                self.previous = GeneratedCode(files=error.files, provider=self.name)
                failure = CodeFailure(stage="codegen", message=error.message, log=error.detail)
                self.say(EventKind.WARNING, f"{self.name}'s code was rejected: {error.message}")
                continue
            self.previous = code
            return code

    def _ask(
        self, spec: TaskSpec, resources: list[Resource], failure: CodeFailure | None
    ) -> GeneratedCode:
        if self.generator.can_repair:
            self.attempts += 1
        if failure is None or self.previous is None:
            return self.generator.generate(spec, resources)
        self.say(
            EventKind.PROGRESS,
            f"asking {self.name} to fix its code (attempt {self.attempts} of "
            f"{self.max_attempts}): {failure.message}",
        )
        return self.generator.repair(spec, resources, self.previous, failure)

    def _can_fall_back(self) -> bool:
        return self.fallback is not None and self.generator is not self.fallback

    def _fall_back(self, reason: str) -> None:
        assert self.fallback is not None
        self.say(EventKind.WARNING, f"{reason}; using the offline {self.fallback.name} instead")
        self.generator = self.fallback
        self.previous = None
        self.attempts = 0
