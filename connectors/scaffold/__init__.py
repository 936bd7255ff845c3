"""``revshare connectors new NAME``: write a working connector folder and its tests.

The folder is dlt-style (``__init__.py``, ``helpers.py``, ``settings.py``, ``README.md``) and
the test module runs the standard suite, so a new connector starts green and stays green as
the real format replaces the template's simple CSV.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from connectors.scaffold import templates as t

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


class ScaffoldError(ValueError):
    """The name is not usable, or the files already exist."""


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def scaffold(
    name: str, dest: Path, tests_dir: Path, *, package: str | None = None, taken: set[str]
) -> list[Path]:
    """Write ``dest/<name>/`` and ``tests_dir/test_<name>.py``; return the files written.

    ``package`` is the import path of the new folder (default ``connectors.<name>``, right for
    this repository; another distribution passes its own). ``taken`` are the registered types:
    a name already served would collide in the registry, so it is refused here, early.
    """
    if not _NAME.match(name):
        raise ScaffoldError(
            f"connector name {name!r} must be lower_snake_case (a-z, 0-9, _), 2-41 characters"
        )
    if name in taken:
        raise ScaffoldError(f"a connector of type {name!r} is already registered")
    folder = dest / name
    test = tests_dir / f"test_{name}.py"
    for p in (folder, test):
        if p.exists():
            raise ScaffoldError(f"{p} already exists; not overwriting")
    values = {
        "name": name,
        "Class": class_name(name),
        "title": name.replace("_", " ").title(),
        "package": package or f"connectors.{name}",
    }
    files = {
        folder / "__init__.py": t.INIT,
        folder / "helpers.py": t.HELPERS,
        folder / "settings.py": t.SETTINGS,
        folder / "README.md": t.README,
        test: t.TEST,
    }
    folder.mkdir(parents=True)
    tests_dir.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(Template(text).substitute(values))
    return list(files)
