"""The offline template generator: both scripts, valid Python, sandbox-only imports, stable."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from pipeline.codegen import contract
from pipeline.codegen.base import ColumnInfo, GeneratedCode, TaskSpec, TaskType
from pipeline.codegen.contract import (
    APP_SCRIPT,
    CHART_FILE,
    METRICS_FILE,
    MODEL_FILE,
    REQUIRED_SOURCES,
    SCHEMA_FILE,
    SEARCH_MODULE,
    TASK_FILE,
    TRAIN_SCRIPT,
)
from pipeline.codegen.template import TEMPLATE_FILES, TemplateGenerator

# What the sandbox offers the generated scripts besides the standard library.
SANDBOX_PACKAGES = {"numpy", "pandas", "sklearn", "joblib", "matplotlib"}
ALLOWED_IMPORTS = SANDBOX_PACKAGES | set(sys.stdlib_module_names) | {"__future__"}


def spec(task: TaskType = TaskType.CLASSIFICATION, target: str = "species") -> TaskSpec:
    return TaskSpec(
        name="flowers",
        goal="predict the species",
        task=task,
        target=target,
        data_file="data.csv",
        columns=[ColumnInfo("petal length", "float64", "number", 0, 40, [1.4, 4.7])],
        n_rows=150,
        sample_rows=[{"petal length": 1.4, target: "setosa"}],
        classes=["setosa", "versicolor"] if task is TaskType.CLASSIFICATION else [],
    )


@pytest.fixture(scope="module")
def generated() -> GeneratedCode:
    return TemplateGenerator().generate(spec(), [])


def test_generator_identifies_itself(generated: GeneratedCode) -> None:
    assert TemplateGenerator.name == "template"
    assert generated.provider == "template"
    assert generated.requirements == []


def test_returns_the_required_scripts_and_the_search_module(generated: GeneratedCode) -> None:
    assert set(generated.files) == {*REQUIRED_SOURCES, SEARCH_MODULE}
    assert set(generated.files) == set(TEMPLATE_FILES)
    assert all(source.strip() for source in generated.files.values())


@pytest.mark.parametrize("file_name", TEMPLATE_FILES)
def test_scripts_compile(generated: GeneratedCode, file_name: str) -> None:
    compile(generated.files[file_name], file_name, "exec")


@pytest.mark.parametrize("file_name", TEMPLATE_FILES)
def test_scripts_import_only_what_the_sandbox_has(generated: GeneratedCode, file_name: str) -> None:
    tree = ast.parse(generated.files[file_name])
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    outside = imported - ALLOWED_IMPORTS - {SEARCH_MODULE.removesuffix(".py")}
    assert not outside, f"{file_name} imports {outside}, which the sandbox does not have"


def test_train_script_reads_and_writes_the_contract_files(generated: GeneratedCode) -> None:
    train = generated.files[TRAIN_SCRIPT]
    for name in (TASK_FILE, MODEL_FILE, METRICS_FILE, SCHEMA_FILE, CHART_FILE):
        assert f'"{name}"' in train, f"train.py never mentions {name}"
    app = generated.files[APP_SCRIPT]
    for name in (MODEL_FILE, METRICS_FILE, SCHEMA_FILE):
        assert f'"{name}"' in app, f"app.py never mentions {name}"


def test_output_is_deterministic() -> None:
    first = TemplateGenerator().generate(spec(), [])
    again = TemplateGenerator().generate(spec(), [])
    assert first == again


def test_scripts_do_not_depend_on_the_spec() -> None:
    """The scripts read task.json at run time, so every task gets the same tested code."""
    a = TemplateGenerator().generate(spec(), [])
    b = TemplateGenerator().generate(spec(TaskType.REGRESSION, target="price"), [])
    assert a.files == b.files


def _function_body(source: str, name: str) -> str:
    """The statements of a top-level function, docstring left out, as an AST dump."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            body = node.body[1:] if ast.get_docstring(node) else node.body
            return "\n".join(ast.dump(statement) for statement in body)
    raise AssertionError(f"no function {name} in the source")


LIMITS = ("MAX_BODY_BYTES", "MAX_ROWS", "MAX_INT_DIGITS", "MAX_JSON_DEPTH", "READ_TIMEOUT_SECONDS")


def test_the_app_enforces_the_contracts_limits(generated: GeneratedCode) -> None:
    """app.py runs alone, so it carries a copy of each limit; the copies stay the contract's."""
    values = {}
    for node in ast.parse(generated.files[APP_SCRIPT]).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in LIMITS:
                values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values == {name: getattr(contract, name) for name in LIMITS}
    doc = contract.__doc__ or ""
    for stated in (
        f"{contract.MAX_BODY_BYTES:,} bytes",
        f"{contract.MAX_ROWS} rows",
        f"{contract.MAX_INT_DIGITS} digits",
        f"{contract.MAX_JSON_DEPTH} levels",
        f"{contract.READ_TIMEOUT_SECONDS} seconds",
    ):
        assert stated in doc, stated


@pytest.mark.parametrize("file_name", REQUIRED_SOURCES)
def test_scripts_match_column_names_by_the_contracts_one_rule(
    generated: GeneratedCode, file_name: str
) -> None:
    # The scripts run alone in the sandbox, so they carry a copy; it must stay the same rule.
    contract_source = Path(contract.__file__).read_text(encoding="utf-8")
    assert _function_body(generated.files[file_name], "column_key") == _function_body(
        contract_source, "column_key"
    )
    assert contract.column_key("  Customer   ID ") == contract.column_key("customer id")
    assert contract.column_key("Plan") != contract.column_key("Plan Type")
