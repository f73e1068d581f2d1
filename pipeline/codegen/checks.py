"""Checks every piece of generated code passes before it runs, whoever wrote it."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import threading
from collections import OrderedDict

from pipeline.codegen.contract import REQUIRED_SOURCES
from pipeline.errors import InvalidCode

# What the sandboxes have besides the standard library (import name -> distribution name).
SANDBOX_PACKAGES: dict[str, str] = {
    "numpy": "numpy",
    "pandas": "pandas",
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "joblib": "joblib",
    "matplotlib": "matplotlib",
}
ALLOWED_REQUIREMENTS = frozenset(SANDBOX_PACKAGES.values())
# Imports that would let code reach outside its task even inside a sandbox.
FORBIDDEN_MODULES = frozenset({"ctypes", "multiprocessing.shared_memory"})


# Parsing and compiling the sources is most of a job's own CPU in a worker (about 0.1 s), and
# template jobs check the same files over and over, beside the web server's acks in the same
# process. A verdict depends on nothing but the files and the requirements, so a pass is
# remembered by their hash, for the most recent few. Only passes: a rejection carries its
# job's files for the repair, and rejected code (an LLM's answer) is rarely seen twice.
PASSED_REMEMBERED = 256
_passed: OrderedDict[str, None] = OrderedDict()
_passed_lock = threading.Lock()


def check_code(files: dict[str, str], requirements: list[str] | None = None) -> None:
    """Raises InvalidCode naming the first problem; `files` travel with it for a repair."""
    key = _fingerprint(files, requirements or [])
    with _passed_lock:
        if key in _passed:
            _passed.move_to_end(key)
            return
    _check(files, requirements)
    with _passed_lock:
        _passed[key] = None
        while len(_passed) > PASSED_REMEMBERED:
            _passed.popitem(last=False)


def _fingerprint(files: dict[str, str], requirements: list[str]) -> str:
    text = json.dumps([sorted(files.items()), requirements], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _check(files: dict[str, str], requirements: list[str] | None) -> None:
    missing = [name for name in REQUIRED_SOURCES if not files.get(name, "").strip()]
    if missing:
        raise InvalidCode(f"the generated code has no {', '.join(missing)}", files=files)
    local_modules = {name.removesuffix(".py") for name in files if name.endswith(".py")}
    for name, source in files.items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise InvalidCode(
                f"the generated file name {name!r} is not a plain file name", files=files
            )
        if name.endswith(".py"):
            _check_python(name, source, local_modules, files)
    for requirement in requirements or []:
        if not _PLAIN_REQUIREMENT.match(requirement.strip()):
            # URLs, paths, extras, markers and pip options could pull code from anywhere.
            raise InvalidCode(
                f"the generated code asks for {requirement[:80]!r}; only plain package names "
                "with an optional version (e.g. scikit-learn>=1.4) are allowed",
                files=files,
            )
    unknown = sorted(set(_normalise(r) for r in requirements or []) - ALLOWED_REQUIREMENTS)
    if unknown:
        raise InvalidCode(
            f"the generated code asks for packages the sandbox does not offer: {', '.join(unknown)}"
            f" (available: {', '.join(sorted(ALLOWED_REQUIREMENTS))})",
            files=files,
        )


def _check_python(name: str, source: str, local: set[str], files: dict[str, str]) -> None:
    try:
        tree = ast.parse(source, filename=name)
        compile(tree, name, "exec")
    except SyntaxError as error:
        raise InvalidCode(
            f"the generated {name} does not parse: {error.msg} (line {error.lineno})",
            detail=f"{name}:{error.lineno}: {(error.text or '').strip()}",
            files=files,
        ) from error
    for module in _imports(tree):
        top = module.split(".")[0]
        if module in FORBIDDEN_MODULES or top in FORBIDDEN_MODULES:
            raise InvalidCode(
                f"the generated {name} imports {module}, which is not allowed", files=files
            )
        if top in local or top in SANDBOX_PACKAGES or top in sys.stdlib_module_names:
            continue
        raise InvalidCode(
            f"the generated {name} imports {top}, which the sandbox does not have; use only "
            f"the standard library and {', '.join(sorted(SANDBOX_PACKAGES))}",
            files=files,
        )


def _imports(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


_VERSION_CLAUSE = r"(==|>=|<=|~=|!=|<|>)\s*[0-9][0-9a-zA-Z.*]*"
_PLAIN_REQUIREMENT = re.compile(
    rf"^[A-Za-z0-9][A-Za-z0-9._-]*(\s*{_VERSION_CLAUSE}(\s*,\s*{_VERSION_CLAUSE})*)?$"
)


def _normalise(requirement: str) -> str:
    """'scikit-learn>=1.4' -> 'scikit-learn' (after _PLAIN_REQUIREMENT has vetted it)."""
    name = re.split(r"[<>=!~\s]", requirement.strip(), maxsplit=1)[0]
    return name.lower().replace("_", "-")
