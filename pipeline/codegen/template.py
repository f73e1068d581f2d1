"""The offline code generator: ships the same tested train.py and app.py for every task."""

from __future__ import annotations

from importlib.resources import files

from pipeline.codegen.base import CodeFailure, GeneratedCode, Resource, TaskSpec
from pipeline.codegen.contract import APP_SCRIPT, TRAIN_SCRIPT
from pipeline.errors import CodegenError

TEMPLATE_FILES = (TRAIN_SCRIPT, APP_SCRIPT)


def template_source(file_name: str) -> str:
    """The text of one template script shipped in pipeline/codegen/templates/."""
    return files("pipeline.codegen").joinpath("templates", file_name).read_text("utf-8")


class TemplateGenerator:
    """Deterministic and offline: the scripts read task.json at run time, so the spec is unused."""

    name = "template"
    can_repair = False

    def generate(self, spec: TaskSpec, resources: list[Resource]) -> GeneratedCode:
        return GeneratedCode(
            files={file_name: template_source(file_name) for file_name in TEMPLATE_FILES},
            requirements=[],
            notes=(
                f"Offline template for {spec.task.value} on '{spec.target}': cross-validates a "
                "linear model against a random forest and keeps the better one."
            ),
            provider=self.name,
        )

    def repair(
        self,
        spec: TaskSpec,
        resources: list[Resource],
        previous: GeneratedCode,
        failure: CodeFailure,
    ) -> GeneratedCode:
        raise CodegenError(f"the offline template cannot be repaired: {failure.message}")
