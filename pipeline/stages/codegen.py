"""Code generation stage: ask the provider, then reject what cannot run before it runs."""

from __future__ import annotations

from pipeline.codegen.base import CodeGenerator, GeneratedCode, Resource, TaskSpec
from pipeline.codegen.contract import REQUIRED_SOURCES
from pipeline.errors import CodegenError


def generate_code(
    generator: CodeGenerator, spec: TaskSpec, resources: list[Resource]
) -> GeneratedCode:
    code = generator.generate(spec, resources)
    check_generated_code(code)
    return code


def check_generated_code(code: GeneratedCode) -> None:
    missing = [name for name in REQUIRED_SOURCES if name not in code.files]
    if missing:
        raise CodegenError(f"the code generator did not write {', '.join(missing)}")
    for name, source in code.files.items():
        if not name.endswith(".py"):
            continue
        try:
            compile(source, name, "exec")
        except SyntaxError as error:
            raise CodegenError(
                f"the generated {name} does not parse: {error.msg} (line {error.lineno})",
                detail=f"{name}:{error.lineno}: {error.text or ''}".strip(),
            ) from error
