#!/bin/sh
# cc-example: bootstraps the compiler from files/cc-example.sh, stamping in
# the version of the cwrappers package installed in PREFIX.
set -eu
if [ ! -f "$PREFIX/share/cwrappers/VERSION" ]; then
	echo "cc-example: cwrappers is not installed in $PREFIX" >&2
	exit 1
fi
cwv=$(cat "$PREFIX/share/cwrappers/VERSION")
echo "=> Configuring cc-example $PKGVERSION with cwrappers $cwv"
echo "=> Bootstrapping, stage 1 of 2"
sed -e "s|@VERSION@|$PKGVERSION|g" -e "s|@CWRAPPERS_VERSION@|$cwv|g" "$FILESDIR/cc-example.sh" > cc-example
chmod 755 cc-example
# The slowest build of the tree, so a bulk build has something to wait for.
sleep 0.5 2>/dev/null || sleep 1
echo "=> Bootstrapping, stage 2 of 2: cc-example compiles a test program"
echo 'echo "hello, world"' > hello.c
"$PREFIX/libexec/cwrappers/cc-wrapper" ./cc-example -o hello hello.c
test "$(./hello)" = "hello, world"
./cc-example --version
echo "=> Installing into $DESTDIR"
mkdir -p "$DESTDIR/bin"
cp cc-example "$DESTDIR/bin/cc-example"
chmod 755 "$DESTDIR/bin/cc-example"
