#!/bin/sh
set -eu
echo "=> Building pkgconf $PKGVERSION with $(cc-example --version)"
sed "s|@VERSION@|$PKGVERSION|g" "$FILESDIR/pkg-config.sh" > pkg-config.c
cc-example -o pkg-config pkg-config.c
echo "=> Testing"
mkdir -p t/lib/pkgconfig
printf 'Name: a\nVersion: 1\nLibs: -la\nRequires: b\n' > t/lib/pkgconfig/a.pc
printf 'Name: b\nVersion: 2\nLibs: -lb\n' > t/lib/pkgconfig/b.pc
test "$(PKG_CONFIG_LIBDIR=t/lib/pkgconfig ./pkg-config --libs a)" = "-la -lb"
echo "=> Installing"
mkdir -p "$DESTDIR/bin" "$DESTDIR/lib/pkgconfig"
cp pkg-config "$DESTDIR/bin/pkg-config"
