#!/bin/sh
set -eu
echo "=> Hatching chicken $PKGVERSION from $(cat "$PREFIX/share/egg/egg.txt")"
mkdir -p "$DESTDIR/share/chicken"
echo "chicken $PKGVERSION" > "$DESTDIR/share/chicken/chicken.txt"
