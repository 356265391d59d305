"""The package list; everything else about the build is in pyproject.toml.

Every package under ladd_format/ is found, so a new subpackage needs no edit anywhere. The repository's
cli/ folder installs as ladd_cli (pyproject.toml [tool.setuptools.package-dir]), a rename that
pyproject's [tool.setuptools.packages.find] cannot express.
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["ladd_format", "ladd_format.*"])
      + ["ladd_cli"] + [f"ladd_cli.{name}" for name in find_packages("cli")])
