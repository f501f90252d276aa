"""The layering issue 14 set: Streamlit only in dashboard/, file formats only in segcore, short functions."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from segcore.runs import schemas

ROOT = Path(__file__).resolve().parents[1]
#: A function this long or longer is split into named steps.
MAX_FUNCTION_LINES = 80


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def imported(tree: ast.AST) -> set[str]:
    """Top-level names of every module a file imports, anywhere in it."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


#: Keys the pages may use although a file has them too: find_runs gives each run its "path", and every table
#: segcore hands a page is keyed by "image_id".
SHARED_KEYS = {"path", "image_id"}


def schema_keys() -> set[str]:
    """Every key of the JSON files segcore writes (run.json, metrics.json, curves.json, comparisons), but
    :data:`SHARED_KEYS`."""
    keys = set()
    for obj in vars(schemas).values():
        if inspect.isclass(obj) and obj.__module__ == schemas.__name__ and hasattr(obj, "__required_keys__"):
            keys |= set(obj.__annotations__)
    return keys - SHARED_KEYS


def test_no_module_of_segcore_imports_streamlit():
    offenders = [str(p.relative_to(ROOT)) for p in modules("segcore")
                 if "streamlit" in imported(ast.parse(p.read_text()))]
    assert not offenders


def test_the_schemas_declare_the_keys_the_next_test_looks_for():
    assert {"segm", "breakdowns", "calibration", "attention", "most_different", "resamples", "options",
            "dataset"} <= schema_keys()


def test_no_page_reads_a_segcore_file_format():
    """The dashboard lays out what segcore computes: it opens no file, names no file of a run directory and
    indexes no key of one (the keys come from segcore.runs.schemas, the names from segcore.runs)."""
    keys, problems = schema_keys(), []
    for path in modules("dashboard"):
        tree = ast.parse(path.read_text())
        where = str(path.relative_to(ROOT))
        problems += [f"{where} imports {m}" for m in imported(tree) & {"json", "csv", "pickle"}]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if name in ("open", "read_text", "read_bytes", "read_csv", "read_json", "load", "loads"):
                    problems.append(f"{where}:{node.lineno} calls {name}")
                first = node.args[0] if node.args else None
                if name == "get" and isinstance(first, ast.Constant) and first.value in keys:
                    problems.append(f"{where}:{node.lineno} reads key {first.value!r}")
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value in keys:
                problems.append(f"{where}:{node.lineno} reads key {node.slice.value!r}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    node.value.endswith((".json", ".csv", ".pt")) or node.value in ("evals", "comparisons")):
                problems.append(f"{where}:{node.lineno} names the file {node.value!r}")
    assert not problems


def test_the_longest_function_of_segcore_is_under_80_lines():
    long = []
    for path in modules("segcore"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines >= MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} has {lines} lines")
    assert not long
