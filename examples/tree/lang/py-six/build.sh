#!/bin/sh
set -eu
: "${PYTHON_VERSION_REQD:?six is built once per Python; PYTHON_VERSION_REQD must be set}"
short=$(echo "$PYTHON_VERSION_REQD" | sed 's/^\(.\)/\1./')
python=python$short
echo "=> Building six $PKGVERSION for $($python --version) with $($python -m setuptools)"
cat > six.py <<SRC
# six $PKGVERSION: Python 2 and 3 compatibility utilities, example edition
six_version() { echo "six/$PKGVERSION (Python \$PYTHON_VERSION)"; }
six_print() { printf '%s\n' "\$*"; }
six_main() { six_version; }
SRC
cat > setup.py <<SRC
py_import setuptools
setup six $PKGVERSION six.py
SRC
$python setup.py
echo "=> Testing"
$python -c '. ./six.py && six_version'
