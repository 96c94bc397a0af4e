"""`make run` installs requirements.txt only, so nothing the gateway runs may import a
package that only requirements-dev.txt brings (the test and lint tools)."""

import ast
import re
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_RUN = {"tests", "bench", ".venv", "var", "node_modules"}


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>~!;\s]", line)[0].lower().replace("_", "-"))
    return names


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_nothing_that_runs_imports_a_test_only_package():
    dev_only = requirement_names(ROOT / "requirements-dev.txt") - requirement_names(
        ROOT / "requirements.txt"
    )
    distributions = {
        module: {name.lower().replace("_", "-") for name in names}
        for module, names in packages_distributions().items()
    }
    offending = {}
    for path in ROOT.rglob("*.py"):
        if NOT_RUN & set(path.relative_to(ROOT).parts):
            continue
        for module in imported_modules(path):
            if distributions.get(module) and distributions[module] <= dev_only:
                offending.setdefault(str(path.relative_to(ROOT)), []).append(module)
    assert dev_only and offending == {}, offending
