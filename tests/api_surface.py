"""The public surface of `import chatbot`: every name of `chatbot.__all__` (and the public functions of its `corpus`
and `training` packages) with its signature, as recorded in docs/api-surface.txt at the last release.

`python -m tests.api_surface` prints the current surface; `--write` records it (with the release, when
CHANGELOG.md's "Unreleased" section has become the new version's).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import chatbot

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO / "docs" / "api-surface.txt"
SUBPACKAGE_NAMES = {"corpus": ["load"], "training": ["dialogue_batches"]}
# What the API reference documents (bin/api-docs): the public modules, without the packages' private submodules.
PDOC_MODULES = ["chatbot.api", "chatbot.corpus", "!chatbot.corpus.", "chatbot.training", "!chatbot.training.", "chatbot.errors"]


def _members(name: str, cls: type) -> dict[str, str]:
    found = {name: f"class{inspect.signature(cls)}"}
    for attribute, value in vars(cls).items():
        if attribute.startswith("_"):
            continue
        if isinstance(value, property):
            found[f"{name}.{attribute}"] = "property"
        elif inspect.isfunction(value):
            found[f"{name}.{attribute}"] = f"def{inspect.signature(value)}"
        elif isinstance(value, classmethod | staticmethod):
            found[f"{name}.{attribute}"] = f"{type(value).__name__}{inspect.signature(value.__func__)}"
    return found


def surface() -> dict[str, str]:
    """{public name: its kind and signature}, e.g. {"load": "def(path_or_name: 'str | Path' = 'default', ...) -> 'Bot'"}."""
    found: dict[str, str] = {}
    for name in chatbot.__all__:
        value = getattr(chatbot, name)
        if name in SUBPACKAGE_NAMES:
            for member in SUBPACKAGE_NAMES[name]:
                found[f"{name}.{member}"] = f"def{inspect.signature(getattr(value, member))}"
        elif inspect.isclass(value):
            found.update(_members(name, value))
        elif inspect.isfunction(value):
            found[name] = f"def{inspect.signature(value)}"
        elif inspect.ismodule(value):
            found[name] = "module"
        else:
            found[name] = type(value).__name__
    return found


def changelog_unreleased() -> str:
    """The text of CHANGELOG.md's "## Unreleased" section ("" when there is none)."""
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    if "## Unreleased" not in text:
        return ""
    section = text.split("## Unreleased", 1)[1]
    return section.split("\n## ", 1)[0]


def main(argv: list[str]) -> int:
    lines = [f"{name} {signature}" for name, signature in sorted(surface().items())]
    if "--write" in argv:
        header = (
            f"# The public surface of chatbot {chatbot.__version__} (python -m tests.api_surface --write; tests/test_api.py checks it)\n"
        )
        RECORD.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
        print(f"recorded {len(lines)} names in {RECORD}")
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
