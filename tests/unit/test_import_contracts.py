"""The "only through its face" import contracts must name every module of each domain:
a module added later and not listed would be open to every other domain."""

from __future__ import annotations

import pkgutil
import tomllib
from importlib import import_module
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_face_contracts_list_every_module_of_their_domain() -> None:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    faces = [c for c in contracts if c["name"].startswith("Other domains use ")]
    assert faces, "no face contracts found"
    for contract in faces:
        domain = contract["name"].split()[3]
        package = import_module(f"ridehail.{domain}")
        modules = {
            f"ridehail.{domain}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
        }
        assert set(contract["forbidden_modules"]) == modules, contract["name"]
