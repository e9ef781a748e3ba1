#!/bin/sh
set -eu
echo "=> Building bzip2 $PKGVERSION with $(cc-example --version)"
cat > bzlib.c <<SRC
# libbz2 from $PKGNAME
bzip2_version() { echo "bzip2/$PKGVERSION"; }
bz2_compress() { rev; }
bz2_decompress() { rev; }
SRC
cc-example -c -o libbz2.sh bzlib.c
mkdir -p "$DESTDIR/lib/pkgconfig"
cp libbz2.sh "$DESTDIR/lib/libbz2.sh"
printf 'Name: bzip2\nVersion: %s\nLibs: -lbz2\n' "$PKGVERSION" > "$DESTDIR/lib/pkgconfig/bzip2.pc"
echo "=> Installed lib/libbz2.sh"
