"""One build step pyproject.toml cannot declare: copy the checkout's chart/ and monitoring/ into the wheel.

They live at the checkout's top, outside the package, where Helm, the docs and the tests use them.
Listing them as packages through `package-dir` would need a hand-kept list of every llmprep
package instead of `packages.find`, and symlinks do not survive into a wheel; so `build_py` copies
them into `<build>/llmprep/_data/` whole (llmprep.shipped reads them there after `pip install`).
Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED_FOLDERS = ("chart", "monitoring")  # the same list as llmprep/shipped.py (a test compares them)


class BuildPyWithData(build_py):
    """`build_py`, then the shipped folders copied into the built package (stale copies replaced)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's folders in place
            return
        for name in SHIPPED_FOLDERS:
            target = Path(self.build_lib) / "llmprep" / "_data" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(HERE / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithData})
