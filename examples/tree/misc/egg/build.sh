#!/bin/sh
set -eu
echo "=> Laying egg $PKGVERSION by $(cat "$PREFIX/share/chicken/chicken.txt")"
mkdir -p "$DESTDIR/share/egg"
echo "egg $PKGVERSION" > "$DESTDIR/share/egg/egg.txt"
