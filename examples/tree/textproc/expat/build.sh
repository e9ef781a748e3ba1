#!/bin/sh
set -eu
echo "=> Configuring expat $PKGVERSION"
cat > expat.c <<SRC
# libexpat $PKGVERSION
expat_version() { echo "expat/$PKGVERSION"; }
xml_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }
SRC
cat > GNUmakefile <<'MK'
all:
	cc-example -c -o libexpat.sh expat.c
check:
	. ./libexpat.sh && test "$(echo '<a&b>' | xml_escape)" = '&lt;a&amp;b&gt;'
install:
	mkdir -p "$DESTDIR/lib/pkgconfig"
	cp libexpat.sh "$DESTDIR/lib/libexpat.sh"
	printf 'Name: expat\nVersion: %s\nLibs: -lexpat\n' "$PKGVERSION" > "$DESTDIR/lib/pkgconfig/expat.pc"
MK
gmake
gmake check
gmake install
