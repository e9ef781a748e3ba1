#!/bin/sh
set -eu
echo "=> Configuring GNU make $PKGVERSION"
echo "checking for a C compiler... $(cc-example --version)"
sed "s|@VERSION@|$PKGVERSION|g" "$FILESDIR/gmake.sh" > gmake.c
echo "=> Building"
cc-example -o gmake gmake.c
echo "=> Testing"
printf 'all:\n\techo gmake works\n' > GNUmakefile
./gmake
./gmake --version
echo "=> Installing"
mkdir -p "$DESTDIR/bin"
cp gmake "$DESTDIR/bin/gmake"
