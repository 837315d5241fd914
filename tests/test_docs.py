"""The map stays true to the code: docs/architecture.md describes every module as its
docstring does, the largest modules and classes are reported, and the REPL reaches data only
through the dialogue manager (issue 14)."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULES = sorted((REPO / "chatbot").rglob("*.py"))
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250


def _relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_every_module_has_a_docstring_and_a_matching_paragraph_in_the_architecture(path):
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring, f"{_relative(path)} has no module docstring"
    summary = docstring.splitlines()[0].strip()
    architecture = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    entry = f"**`{_relative(path)}`**: {summary}"
    assert entry in architecture, f"docs/architecture.md lacks the paragraph starting {entry!r}"


def test_the_architecture_names_no_module_that_does_not_exist():
    architecture = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = {line.split("`")[1] for line in architecture.splitlines() if line.startswith("**`chatbot/")}
    assert named == {_relative(path) for path in MODULES}


def sizes() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(lines, module) of every module and (lines, module:class) of every class, largest first."""
    modules, classes = [], []
    for path in MODULES:
        source = path.read_text(encoding="utf-8")
        modules.append((len(source.splitlines()), _relative(path)))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                classes.append((node.end_lineno - node.lineno + 1, f"{_relative(path)}:{node.name}"))
    return sorted(modules, reverse=True), sorted(classes, reverse=True)


def test_size_is_reported_not_enforced():
    """Code is split by meaning, not to fit a cap (issue 25): the largest modules and classes are printed as a
    warning, with those over the old caps (400 and 250 lines) marked, so a growing one is seen, never forced apart."""
    modules, classes = sizes()
    assert modules and classes  # the walk found the package
    over = [f"{name} {lines} lines" for lines, name in modules if lines > MAX_MODULE_LINES]
    over += [f"{name} {lines} lines" for lines, name in classes if lines > MAX_CLASS_LINES]
    largest = ", ".join(f"{name} ({lines})" for lines, name in classes[:5])
    warnings.warn(f"the five largest classes: {largest}" + (f"; over the old caps: {', '.join(over)}" if over else ""), stacklevel=1)


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_repl_reaches_data_only_through_the_dialogue_manager():
    imported = _imported_modules(REPO / "chatbot" / "chat" / "repl.py")
    assert not {name for name in imported if name.startswith("chatbot.storage")}, imported
    assert "chatbot.dialogue.manager" in imported
    source = (REPO / "chatbot" / "chat" / "repl.py").read_text(encoding="utf-8")
    assert ".store" not in source and "sys.modules" not in source


def test_inference_does_not_import_the_training_package():
    names = [
        "dialogue/manager.py",
        "chat/repl.py",
        "evaluation/replay.py",
        *(f"inference/{p.name}" for p in (REPO / "chatbot" / "inference").glob("*.py")),
    ]
    for name in names:
        imported = _imported_modules(REPO / "chatbot" / name)
        assert not {m for m in imported if m.startswith("chatbot.training")}, (name, imported)
    assert "chatbot.inference.framing" in _imported_modules(REPO / "chatbot" / "inference" / "responder.py")


def test_front_end_modules_load_no_tensorflow():
    """docs/architecture.md, section 5: the prompt and `chatbot sessions` must not pay TensorFlow's import."""
    import subprocess
    import sys

    modules = [
        "api",
        "cli",
        "cli.commands",
        "chat.run",
        "chat.terminal",
        "text.messages",
        "chat.repl",
        "chat.views",
        "evaluation.replay",
        "evaluation.evaluate",
        "evaluation.reports",
        "evaluation.pack",
        "dialogue.export",
        "training.trainer",
        "dialogue.manager",
        "storage",
    ]
    code = "import sys\n" + "".join(f"import chatbot.{m}\n" for m in modules) + "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
