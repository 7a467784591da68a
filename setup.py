"""The source folders under their import names (``export/`` is ``sr_export``, ``runtime/`` is
``sr_runtime``), every subpackage found: a new family folder needs no entry here. The rest of the
metadata is in pyproject.toml."""

from setuptools import find_packages, setup

PACKAGE_DIRS = {"sr_export": "export", "sr_runtime": "runtime"}

setup(
    package_dir=PACKAGE_DIRS,
    packages=[
        f"{name}.{sub}" if sub else name
        for name, folder in PACKAGE_DIRS.items()
        for sub in ["", *find_packages(folder)]
    ],
)
