#!/bin/sh
set -eu
echo "=> Configuring curl $PKGVERSION"
echo "checking for OpenSSL... $(pkg-config --modversion openssl)"
libs=$(pkg-config --libs openssl)
echo "checking libraries... $libs"
cat > libcurl.c <<SRC
# libcurl $PKGVERSION; needs -lssl -lcrypto -lz
curl_version_info() { echo "libcurl/$PKGVERSION \$(crypto_version) \$(zlib_version)"; }
SRC
cat > curl.c <<SRC
curl_main() {
	case \${1-} in
	--version|-V) echo "curl $PKGVERSION (example) \$(curl_version_info)" ;;
	"") echo "curl: try 'curl --help'" >&2; return 2 ;;
	*) echo "curl: (6) Could not resolve host: \$1 (the example tree has no network)" >&2; return 6 ;;
	esac
}
curl_main "\$@"
SRC
echo "=> Building"
cc-example -c -o libcurl.sh libcurl.c
cc-example -o curl -L . -lcurl $libs curl.c
./curl --version
echo "=> Installing"
mkdir -p "$DESTDIR/bin" "$DESTDIR/lib/pkgconfig"
cp curl "$DESTDIR/bin/curl"
cp libcurl.sh "$DESTDIR/lib/libcurl.sh"
printf 'Name: libcurl\nVersion: %s\nRequires: openssl zlib\nLibs: -lcurl\n' "$PKGVERSION" > "$DESTDIR/lib/pkgconfig/libcurl.pc"
