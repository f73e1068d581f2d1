"""The offline code generator: ships the same tested train.py and app.py for every task."""

from __future__ import annotations

from importlib.resources import files

from pipeline.codegen.base import CodeFailure, GeneratedCode, Resource, TaskSpec
from pipeline.codegen.contract import APP_SCRIPT, SEARCH_MODULE, TRAIN_SCRIPT
from pipeline.errors import CodegenError

TEMPLATE_FILES = (TRAIN_SCRIPT, APP_SCRIPT, SEARCH_MODULE)


def template_source(file_name: str) -> str:
    """The text of one template script shipped in pipeline/codegen/templates/."""
    return files("pipeline.codegen").joinpath("templates", file_name).read_text("utf-8")


def template_files() -> dict[str, str]:
    """Every template file by name, as the sandbox gets them."""
    return {file_name: template_source(file_name) for file_name in TEMPLATE_FILES}


class TemplateGenerator:
    """Deterministic and offline: the scripts read task.json at run time, so the spec is unused."""

    name = "template"
    can_repair = False

    def generate(self, spec: TaskSpec, resources: list[Resource]) -> GeneratedCode:
        return GeneratedCode(
            files=template_files(),
            requirements=[],
            notes=(
                f"Offline template for {spec.task.value} on '{spec.target}': searches gradient "
                "boosting, linear models, forests and blends of them within the time budget, "
                "and keeps the best by cross-validation."
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
