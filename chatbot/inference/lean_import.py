"""Start TensorFlow and Keras without the optional imports they make only in case.

`import tensorflow` imports JAX twice over (tf.lite's JAX converter,
`tensorflow.lite.python.util`, and Keras's Orbax checkpoint callback,
`keras.src.callbacks.orbax_checkpoint`), and `import keras` imports matplotlib's
pyplot (its image-gallery plots, `keras.src.visualization`); each is wrapped in
``try: ... except ImportError`` there. Together they cost about 1.2 of the 5.5 CPU
seconds of a TensorFlow start on a 2-core machine (`python -X importtime`), and no
`chatbot` process needs them from there. `skip_optional_imports` makes exactly those
importers see the package as absent; every other importer imports it as usual:
training's curves import pyplot themselves (`chatbot.training.plots`), and the JAX
backend imports JAX from Keras's backend module before those importers run.

The `chatbot` command and each `chatbot serve` worker install it before anything
imports TensorFlow. A program that imports `chatbot` as a library is left alone.
"""

from __future__ import annotations

import importlib.abc
import sys
import types

# package -> the importers (module-name prefixes) that see it as absent
SKIPPED = {"jax": ("tensorflow.lite.", "keras.src.callbacks.orbax_checkpoint"), "matplotlib": ("keras.src.visualization.",)}


class _SkipOptionalImports(importlib.abc.MetaPathFinder):
    """A `sys.meta_path` finder raising ModuleNotFoundError for a `SKIPPED` package imported from its listed importers."""

    def find_spec(self, name, path=None, target=None):
        importers = SKIPPED.get(name.partition(".")[0])
        if importers is None:
            return None
        frame: types.FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__", "").startswith("importlib"):
            frame = frame.f_back  # the import system's own frames, up to the module whose import statement runs
        importer = frame.f_globals.get("__name__", "") if frame is not None else ""
        if importer.startswith(importers):
            raise ModuleNotFoundError(f"No module named {name!r} (not needed by chatbot; skipped)", name=name)
        return None


def skip_optional_imports() -> None:
    """Install the finder (once) at the front of `sys.meta_path`; call it before TensorFlow is imported."""
    if not any(isinstance(finder, _SkipOptionalImports) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SkipOptionalImports())
