#!/bin/sh
set -eu
echo "=> Configuring xz $PKGVERSION"
cat > lzma.c <<SRC
# liblzma $PKGVERSION
lzma_version() { echo "liblzma/$PKGVERSION"; }
SRC
cat > xz.c <<SRC
xz_main() {
	case \${1-} in
	--version) echo "xz (XZ Utils) $PKGVERSION"; lzma_version ;;
	*) cat ;;
	esac
}
xz_main "\$@"
SRC
cat > GNUmakefile <<'MK'
all:
	cc-example -c -o liblzma.sh lzma.c
	cc-example -o xz -L . -llzma xz.c
	./xz --version
install:
	mkdir -p "$DESTDIR/bin" "$DESTDIR/lib/pkgconfig"
	cp xz "$DESTDIR/bin/xz"
	cp liblzma.sh "$DESTDIR/lib/liblzma.sh"
	printf 'Name: liblzma\nVersion: %s\nLibs: -llzma\n' "$PKGVERSION" > "$DESTDIR/lib/pkgconfig/liblzma.pc"
MK
gmake
gmake install
