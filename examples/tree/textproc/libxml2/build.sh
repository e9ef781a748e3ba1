#!/bin/sh
set -eu
echo "=> Configuring libxml2 $PKGVERSION"
echo "checking for zlib... $(pkg-config --modversion zlib)"
echo "checking for liblzma... $(pkg-config --modversion liblzma)"
cat > xml2.c <<SRC
# libxml2 $PKGVERSION; needs -lz -llzma
xml2_version() { echo "libxml2/$PKGVERSION (\$(zlib_version), \$(lzma_version))"; }
SRC
cat > xmllint.c <<'SRC'
xmllint_main() {
	case ${1-} in
	--version) echo "xmllint: using $(xml2_version)" ;;
	*) cat "$@" ;;
	esac
}
xmllint_main "$@"
SRC
echo "=> Building"
cc-example -c -o libxml2.sh xml2.c
cc-example -o xmllint -L . -lxml2 $(pkg-config --libs zlib liblzma) xmllint.c
./xmllint --version
echo "=> Installing"
mkdir -p "$DESTDIR/bin" "$DESTDIR/lib/pkgconfig"
cp xmllint "$DESTDIR/bin/xmllint"
cp libxml2.sh "$DESTDIR/lib/libxml2.sh"
printf 'Name: libxml-2.0\nVersion: %s\nRequires: zlib liblzma\nLibs: -lxml2\n' "$PKGVERSION" > "$DESTDIR/lib/pkgconfig/libxml-2.0.pc"
