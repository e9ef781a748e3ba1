#!/bin/sh
set -eu
echo "=> Configuring libffi $PKGVERSION"
cat > ffi.c <<SRC
# libffi $PKGVERSION
ffi_version() { echo "libffi/$PKGVERSION"; }
# ffi_call FUNCTION ARG...: calls a function by name
ffi_call() { "\$@"; }
SRC
cat > GNUmakefile <<'MK'
all:
	cc-example -c -o libffi.sh ffi.c
install:
	mkdir -p "$DESTDIR/lib/pkgconfig"
	cp libffi.sh "$DESTDIR/lib/libffi.sh"
	printf 'Name: libffi\nVersion: %s\nLibs: -lffi\n' "$PKGVERSION" > "$DESTDIR/lib/pkgconfig/libffi.pc"
MK
gmake all
gmake install
