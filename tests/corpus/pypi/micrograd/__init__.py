# Vendored verbatim below this header (corpus program support; see tests/corpus/README.md).
# Source: PyPI micrograd==0.1.0, sdist micrograd-0.1.0.tar.gz, path micrograd-0.1.0/micrograd/__init__.py
# Licence: MIT (the distribution's classifier "License :: OSI Approved :: MIT License");
# Author: Andrej Karpathy (PKG-INFO); the sdist ships no licence text: the MIT terms are in
# tests/corpus/pypi/LICENSES.md.

