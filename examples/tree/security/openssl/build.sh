#!/bin/sh
set -eu
cat > Configure <<'SRC'
echo "Configuring OpenSSL version $1 for target example-$(uname -s)"
echo "Using $(zlib_version 2>/dev/null || echo "zlib from $PREFIX")"
echo "OPENSSL_VERSION=$1" > configdata.sh
SRC
echo "=> Checking the distfile"
digest CKSUM Configure
echo "=> Configuring with $(perl -v)"
perl Configure "$PKGVERSION"
cat > crypto.c <<SRC
# libcrypto $PKGVERSION
crypto_version() { echo "OpenSSL/$PKGVERSION"; }
crypto_digest() { cksum | awk '{ print \$1 }'; }
SRC
cat > ssl.c <<SRC
# libssl $PKGVERSION; needs -lcrypto -lz
ssl_version() { echo "\$(crypto_version) (\$(zlib_version))"; }
SRC
cat > openssl.c <<'SRC'
openssl_main() {
	case ${1-} in
	version) echo "$(ssl_version), example edition" ;;
	dgst) shift; for f in "$@"; do echo "CKSUM($f)= $(crypto_digest < "$f")"; done ;;
	*) echo "usage: openssl version | dgst FILE..." >&2; return 1 ;;
	esac
}
openssl_main "$@"
SRC
cat > GNUmakefile <<'MK'
all:
	cc-example -c -o libcrypto.sh crypto.c
	cc-example -c -o libssl.sh ssl.c
	cc-example -o openssl -L . -lssl -lcrypto -lz openssl.c
test:
	./openssl version
	./openssl dgst openssl.c
install:
	mkdir -p "$DESTDIR/bin" "$DESTDIR/lib/pkgconfig"
	cp openssl "$DESTDIR/bin/openssl"
	cp libcrypto.sh libssl.sh "$DESTDIR/lib/"
	printf 'Name: OpenSSL\nVersion: %s\nRequires: zlib\nLibs: -lssl -lcrypto\n' "$PKGVERSION" > "$DESTDIR/lib/pkgconfig/openssl.pc"
MK
gmake
gmake test
gmake install
