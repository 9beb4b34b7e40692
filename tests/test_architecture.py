"""The shape of the code: imports go one way, only the UI imports gradio, and one module knows the data layout."""

from __future__ import annotations

import ast
import re

from conftest import ROOT

LAYERS = {"plumbing": 0, "characters": 1, "engine": 2, "training": 3, "evaluation": 3, "ui": 4}


def imports_of(path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_imports_go_one_way_and_only_the_ui_imports_gradio_and_spaces():
    wrong = []
    for package, layer in LAYERS.items():
        for path in (ROOT / package).rglob("*.py"):
            for module in imports_of(path):
                top = module.split(".")[0]
                if top in ("gradio", "spaces") and package != "ui":  # spaces (ZeroGPU) is Gradio's, too
                    wrong.append((path.name, module))
                if top in LAYERS and (LAYERS[top] > layer or (layer == 3 and top != package and LAYERS[top] == 3)):
                    wrong.append((f"{package}/{path.name}", module))
    assert not wrong, wrong


def test_only_the_layout_module_names_the_data_folders():
    """A change to where runs (or datasets, chats, …) are stored touches plumbing/layout.py alone."""
    folder = re.compile(r"""["'](?:runs|datasets|chats|interviews|characters|models)["']""")
    naming = []
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            if path.relative_to(ROOT).as_posix() == "plumbing/layout.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if folder.search(line) and ("/ " in line or "data_dir" in line):
                    naming.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not naming, naming
