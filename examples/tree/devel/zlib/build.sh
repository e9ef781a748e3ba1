#!/bin/sh
set -eu
echo "=> Configuring zlib $PKGVERSION with $(cc-example --version)"
cat > zlib.c <<SRC
# zlib $PKGVERSION
zlib_version() { echo "zlib/$PKGVERSION"; }
# rot13: the example tree's idea of compression
z_deflate() { tr 'A-Za-z' 'N-ZA-Mn-za-m'; }
z_inflate() { tr 'A-Za-z' 'N-ZA-Mn-za-m'; }
SRC
echo "=> Building libz.sh"
cc-example -c -o libz.sh zlib.c
echo "=> Testing"
. ./libz.sh
test "$(echo Hello | z_deflate | z_inflate)" = Hello
echo "=> Installing"
mkdir -p "$DESTDIR/lib/pkgconfig"
cp libz.sh "$DESTDIR/lib/libz.sh"
printf 'Name: zlib\nVersion: %s\nLibs: -lz\n' "$PKGVERSION" > "$DESTDIR/lib/pkgconfig/zlib.pc"
