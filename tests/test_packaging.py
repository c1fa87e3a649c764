"""What pyproject.toml promises about the package: it ships every module and the email
templates, and it declares every third-party import.

These checks catch the usual slips without a build (a new subpackage or template file left out
of the package list, an import whose distribution is not a declared dependency); one test builds
the real wheel, offline, installs it outside the checkout and runs `revbot demo` from it.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import importlib.resources
import re
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bot.mail.render import HTML_TEMPLATE, TEMPLATES_PACKAGE, TEXT_TEMPLATE

REPO = Path(__file__).resolve().parents[1]
PYPROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
SETUPTOOLS: dict[str, Any] = PYPROJECT["tool"]["setuptools"]
LOCAL = {"bot", "bench", "tests", "__future__"}


def test_every_package_under_bot_is_listed() -> None:
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "bot").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert set(SETUPTOOLS["packages"]) == on_disk | {TEMPLATES_PACKAGE}


def test_the_templates_folder_ships_as_a_package_with_all_its_files() -> None:
    folder = SETUPTOOLS["package-dir"][TEMPLATES_PACKAGE]
    assert (REPO / folder / "__init__.py").is_file()
    patterns = SETUPTOOLS["package-data"][TEMPLATES_PACKAGE]
    for path in (REPO / folder).iterdir():
        if path.name == "__init__.py" or path.name == "__pycache__":
            continue
        assert any(fnmatch.fnmatch(path.name, p) for p in patterns), f"{path.name} not shipped"


def test_the_templates_are_found_through_the_import_system() -> None:
    # Whatever the working directory: no path is derived from the checkout.
    root = importlib.resources.files(TEMPLATES_PACKAGE)
    for name in (HTML_TEMPLATE, TEXT_TEMPLATE):
        assert root.joinpath(name).read_text("utf-8").strip()


def test_the_version_has_one_source() -> None:
    assert "version" not in PYPROJECT["project"]
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert SETUPTOOLS["dynamic"]["version"] == {"attr": "bot.__version__"}


def _declared(*extras: str) -> set[str]:
    project = PYPROJECT["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {_normalize(_name(r)) for r in requirements}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match[0]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _third_party_imports(folder: Path) -> dict[str, str]:
    """Top-level module -> one file that imports it, for every non-stdlib import."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top not in LOCAL:
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize(
    ("folder", "extras"), [("bot", ()), ("tests", ("test",))], ids=["bot", "tests"]
)
def test_every_third_party_import_is_declared(folder: str, extras: tuple[str, ...]) -> None:
    declared = _declared(*extras)
    providers = importlib.metadata.packages_distributions()
    missing = {
        module: where
        for module, where in _third_party_imports(REPO / folder).items()
        if not declared & {_normalize(d) for d in providers.get(module, [])}
    }
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_wheel_runs_the_demo_from_an_empty_folder(tmp_path: Path) -> None:
    """Built without network (no build isolation: setuptools is a test dependency), installed
    (not editable) into a folder of its own, run from an empty directory: the templates come
    from the installed package, and the investor email reaches the demo's outbox."""
    import os
    import subprocess

    dist, site, empty = tmp_path / "dist", tmp_path / "site", tmp_path / "empty"
    for d in (dist, site, empty):
        d.mkdir()
    # The build backend itself (no pip, no network): what `python -m build` would call.
    build = (
        "import os, sys; os.chdir(sys.argv[1]); import setuptools.build_meta as b; "
        "print(b.build_wheel(sys.argv[2]))"
    )
    subprocess.run([sys.executable, "-c", build, str(REPO), str(dist)], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    [wheel] = dist.glob("revbot-*.whl")
    # A pure-Python wheel installs by unpacking it (the console script aside: run as -m bot).
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    assert (site / "bot" / "templates" / HTML_TEMPLATE).is_file()
    # The installed package comes first on the path, ahead of the checkout's editable one.
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    where = subprocess.run([sys.executable, "-c", "import bot; print(bot.__file__)"], cwd=empty,
                           env=env, capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert where.stdout.strip().startswith(str(site)), where.stdout
    run = subprocess.run([sys.executable, "-m", "bot", "demo", "--days", "40"], cwd=empty, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert list((empty / "revbot-demo-data" / "outbox").glob("*.eml")), run.stdout
