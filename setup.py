from pathlib import Path

from setuptools import find_packages, setup

version = {}
for line in (Path(__file__).parent / "sparsecomp" / "version.py").read_text().splitlines():
    if line.startswith("__version__"):
        exec(line, version)

setup(
    name="sparsecomp",
    version=version["__version__"],
    description="Make trained Keras models smaller on disk: pruning, dead-unit removal, weight sharing, compact sparse checkpoints.",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["sparsecomp", "sparsecomp.*"]),
    package_data={"sparsecomp": ["_data/mnist/*"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.11",
        "h5py>=3.10",
        "tensorflow>=2.16",   # TensorFlow 2.16+ ships Keras 3
        "keras>=3.3",
        "matplotlib>=3.7",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "atheris>=2.3; platform_system == 'Linux'"],
        # zstandard: only benchmarks/codecs.py, to measure it against the deflate the format uses
        "bench": ["zstandard>=0.22"],
        # Keras 2 for current TensorFlow: only to *write* genuine Keras 2 fixtures/benchmark inputs.
        "keras2": ["tf-keras"],
    },
    entry_points={"console_scripts": ["sparsecomp=sparsecomp.cli:main"]},
    license="Apache-2.0",
)
