#!/bin/sh
# Never run: the Makefile sets PKG_FAIL_REASON.
echo "openjdk8: this package is marked broken (PKG_FAIL_REASON) and must not be built" >&2
exit 1
