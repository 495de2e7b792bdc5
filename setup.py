"""Build hook: the wheel ships the report templates compiled (bonelesion/report/precompile.py).

Everything else about the package is declared in pyproject.toml.
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

_PRECOMPILE = Path(__file__).resolve().parent / "src" / "bonelesion" / "report" / "precompile.py"


class BuildPy(build_py):
    """Copy the package, then compile its report templates into the build."""

    def run(self) -> None:
        """Build the package as setuptools does, then add the compiled templates."""
        super().run()
        if getattr(self, "editable_mode", False):  # a checkout: `make install` compiles them
            return
        spec = importlib.util.spec_from_file_location("_bonelesion_precompile", _PRECOMPILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        built = Path(self.build_lib) / "bonelesion" / "report"
        module.compile_templates(built / "templates_compiled", templates=built / "templates")


setup(cmdclass={"build_py": BuildPy})
