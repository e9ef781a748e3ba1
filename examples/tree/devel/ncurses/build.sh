#!/bin/sh
set -eu
echo "=> Configuring ncurses $PKGVERSION"
cat > ncurses.c <<'SRC'
# nc_box TEXT: draws TEXT in a box
nc_box() {
	_nc_line=$(printf '%s' "$*" | sed 's/./-/g')
	echo "+-$_nc_line-+"
	echo "| $* |"
	echo "+-$_nc_line-+"
}
SRC
echo "ncurses_version() { echo \"ncurses/$PKGVERSION\"; }" >> ncurses.c
cat > GNUmakefile <<'MK'
all:
	cc-example -c -o libncurses.sh ncurses.c
install:
	mkdir -p "$DESTDIR/lib/pkgconfig" "$DESTDIR/share/terminfo/x"
	cp libncurses.sh "$DESTDIR/lib/libncurses.sh"
	printf 'xterm|example terminal,\n\tcols#80, lines#24,\n' > "$DESTDIR/share/terminfo/x/xterm"
	printf 'Name: ncurses\nVersion: %s\nLibs: -lncurses\n' "$PKGVERSION" > "$DESTDIR/lib/pkgconfig/ncurses.pc"
MK
gmake
gmake install
