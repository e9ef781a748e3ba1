#!/bin/sh
set -eu
: "${PYTHON_VERSION_REQD:?setuptools is built once per Python; PYTHON_VERSION_REQD must be set}"
short=$(echo "$PYTHON_VERSION_REQD" | sed 's/^\(.\)/\1./')
python=python$short
echo "=> Building setuptools $PKGVERSION for $($python --version)"
sed -e "s|@VERSION@|$PKGVERSION|g" -e "s|@PYSHORT@|$short|g" "$FILESDIR/setuptools.py" > setuptools.py
# setuptools installs itself with itself.
echo '. ./setuptools.py && setup setuptools "$SETUPTOOLS_VERSION" setuptools.py' > setup.py
$python setup.py
