"""The repair-or-fall-back logic of the code generation stage, with scripted generators."""

from __future__ import annotations

import pytest

from pipeline.codegen.base import CodeFailure, GeneratedCode, Resource, TaskSpec, TaskType
from pipeline.codegen.template import TemplateGenerator, template_files
from pipeline.errors import CodegenError, CodegenUnavailable, InvalidCode
from pipeline.events import EventKind
from pipeline.stages.codegen import CodeAuthor

SPEC = TaskSpec(
    name="t",
    goal="g",
    task=TaskType.CLASSIFICATION,
    target="y",
    data_file="data.csv",
    columns=[],
    n_rows=10,
    sample_rows=[],
)
GOOD = template_files()

Answer = GeneratedCode | Exception


class RepairingGenerator:
    """Answers from a script; records what each call was told."""

    name = "groq"
    can_repair = True

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, CodeFailure | None, GeneratedCode | None]] = []

    def _next(self) -> GeneratedCode:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def generate(self, spec: TaskSpec, resources: list[Resource]) -> GeneratedCode:
        self.calls.append(("generate", None, None))
        return self._next()

    def repair(
        self,
        spec: TaskSpec,
        resources: list[Resource],
        previous: GeneratedCode,
        failure: CodeFailure,
    ) -> GeneratedCode:
        self.calls.append(("repair", failure, previous))
        return self._next()


def code(files: dict[str, str] | None = None) -> GeneratedCode:
    return GeneratedCode(files=files or GOOD, provider="groq")


def author(
    generator: object, *, fallback: bool = True, attempts: int = 3
) -> tuple[CodeAuthor, list[tuple[EventKind, str]]]:
    said: list[tuple[EventKind, str]] = []

    def say(kind: EventKind, message: str) -> None:
        return said.append((kind, message))

    made = CodeAuthor(
        generator,
        fallback=TemplateGenerator() if fallback else None,  # type: ignore[arg-type]
        max_attempts=attempts,
        say=say,
    )
    return made, said


def test_the_template_writes_once_and_its_failures_are_final() -> None:
    writer, said = author(TemplateGenerator(), fallback=False)
    assert writer.write(SPEC, []).files.keys() == GOOD.keys()
    assert writer.can_retry() is False and said == []


def test_rejected_code_goes_back_with_the_reason() -> None:
    broken = {**GOOD, "train.py": "def broken(:\n"}
    generator = RepairingGenerator(code(broken), code())
    writer, said = author(generator)
    result = writer.write(SPEC, [])
    assert result.files == GOOD and writer.name == "groq"
    kind, failure, previous = generator.calls[1]
    assert kind == "repair" and failure is not None and failure.stage == "codegen"
    assert "does not parse" in failure.message and previous is not None
    assert previous.files["train.py"] == "def broken(:\n"
    assert any(k == EventKind.WARNING and "rejected" in m for k, m in said)
    assert any("attempt 2 of 3" in m for _, m in said)


def test_a_training_failure_is_repaired_with_the_log() -> None:
    generator = RepairingGenerator(code(), code())
    writer, _ = author(generator)
    writer.write(SPEC, [])
    assert writer.can_retry()
    failure = CodeFailure(stage="train", message="KeyError: 'x'", log="Traceback ...")
    writer.write(SPEC, [], failure)
    assert generator.calls[1][:2] == ("repair", failure)


def test_unreachable_provider_falls_back_to_the_template_and_says_so() -> None:
    writer, said = author(RepairingGenerator(CodegenUnavailable("Groq could not be reached")))
    result = writer.write(SPEC, [])
    assert result.provider == "template" and writer.name == "template"
    assert (
        EventKind.WARNING,
        "Groq could not be reached; using the offline template instead",
    ) in said
    assert writer.can_retry() is False


def test_running_out_of_attempts_falls_back() -> None:
    bad = code({**GOOD, "app.py": "import requests\n"})
    writer, said = author(RepairingGenerator(bad, bad), attempts=2)
    assert writer.write(SPEC, []).provider == "template"
    assert any("after 2 attempts" in m for _, m in said)


def test_without_a_fallback_running_out_is_an_error() -> None:
    bad = InvalidCode("not JSON")
    writer, _ = author(RepairingGenerator(bad, bad), fallback=False, attempts=2)
    with pytest.raises(CodegenError, match="after 2 attempts"):
        writer.write(SPEC, [])


def test_a_refused_repair_falls_back_once_instead_of_asking_again() -> None:
    broken = code({**GOOD, "train.py": "def broken(:\n"})
    too_large = CodegenUnavailable("Groq refused the request as too large for this key")
    generator = RepairingGenerator(broken, too_large)
    writer, said = author(generator)
    assert writer.write(SPEC, []).provider == "template"
    assert [call[0] for call in generator.calls] == ["generate", "repair"]
    assert said[-1] == (
        EventKind.WARNING,
        "Groq refused the request as too large for this key; using the offline template instead",
    )
