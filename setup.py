"""The build step pyproject.toml cannot express: compile the gettext catalogues into the wheel.

Every ``node/locale/<lang>/LC_MESSAGES/*.po`` becomes the ``.mo`` next to it in the build
directory (by `node/pofile.py`, loaded by path: nothing is installed yet). The ``.mo`` files are
not committed; an editable install compiles them on first use instead (`node.i18n.catalogue`).
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _pofile() -> object:
    spec = importlib.util.spec_from_file_location("_streetnode_pofile", HERE / "node" / "pofile.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class BuildPyWithCatalogues(build_py):
    """build_py, then one ``.mo`` per ``.po`` under build_lib/node/locale."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # the source tree is the package: compiled on first use
            return
        pofile = _pofile()
        for po in sorted((HERE / "node" / "locale").glob("*/LC_MESSAGES/*.po")):
            target = Path(self.build_lib) / po.relative_to(HERE).with_suffix(".mo")
            pofile.compile_file(po, target)


setup(cmdclass={"build_py": BuildPyWithCatalogues})
