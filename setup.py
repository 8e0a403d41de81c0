"""Build script: compiles the C++ core (csrc/) into microcoder_fast._C with pybind11 and installs the
top-level kernels/ folder as the importable subpackage microcoder_fast.kernels."""

import glob
import os

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = "0.1.0"

sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))

ext = Pybind11Extension(
    "microcoder_fast._C",
    sources,
    include_dirs=["csrc"],
    cxx_std=17,
    define_macros=[("MICROCODER_VERSION", f'"{VERSION}"')],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    depends=sorted(glob.glob(os.path.join("csrc", "*.h"))),
)

packages = find_packages(include=["microcoder_fast", "microcoder_fast.*"])
packages.append("microcoder_fast.kernels")

setup(
    version=VERSION,
    packages=packages,
    package_dir={"microcoder_fast.kernels": "kernels"},
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
    zip_safe=False,
)
