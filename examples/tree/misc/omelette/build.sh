#!/bin/sh
set -eu
echo "=> Cooking omelette $PKGVERSION with $(cat "$PREFIX/share/egg/egg.txt")"
mkdir -p "$DESTDIR/share/omelette"
cat "$PREFIX/share/egg/egg.txt" > "$DESTDIR/share/omelette/recipe.txt"
