"""A chatty training script: the template's code, its train.py printing many lines first.

Used by the noisy-output tests and bench/noisy.py. The lines come as fast as Python prints
them (one write each: sandboxes run code with PYTHONUNBUFFERED=1), the worst a training
loop that logs every step can do.
"""

from __future__ import annotations

from pipeline.codegen.base import CodeFailure, GeneratedCode, Resource, TaskSpec
from pipeline.codegen.contract import TRAIN_SCRIPT
from pipeline.codegen.template import TemplateGenerator

FUTURE = "from __future__ import annotations\n"


def printed_line(n: int) -> str:
    """Line `n` (from 1) of what a noisy script prints."""
    return f"step {n}: loss {1 / n:.6f}"


def noisy_prelude(lines: int) -> str:
    return f"for _n in range(1, {lines} + 1):\n    print(f'step {{_n}}: loss {{1 / _n:.6f}}')\n"


class NoisyGenerator:
    """The template's files; train.py prints `lines` lines before it trains, then `ending`
    (Python source) runs instead of the training when given (a failure, a hang)."""

    name = "noisy"
    can_repair = False

    def __init__(self, lines: int, *, ending: str = "") -> None:
        self.lines = lines
        self.ending = ending

    def generate(self, spec: TaskSpec, resources: list[Resource]) -> GeneratedCode:
        files = dict(TemplateGenerator().generate(spec, resources).files)
        train = files[TRAIN_SCRIPT]
        assert train.count(FUTURE) == 1, "the template's train.py changed shape"
        prelude = noisy_prelude(self.lines) if self.lines else ""
        if self.ending:
            files[TRAIN_SCRIPT] = prelude + self.ending
        else:  # after the __future__ import, which must come first
            files[TRAIN_SCRIPT] = train.replace(FUTURE, FUTURE + prelude, 1)
        return GeneratedCode(files=files, provider=self.name)

    def repair(
        self,
        spec: TaskSpec,
        resources: list[Resource],
        previous: GeneratedCode,
        failure: CodeFailure,
    ) -> GeneratedCode:
        raise AssertionError("can_repair is False: the runner never asks")
