#!/bin/sh
# cwrappers: installs the wrapper every compile goes through, and the VERSION
# file cc-example bakes into everything it compiles.
set -eu
echo "=> Building cwrappers $PKGVERSION"
cat > cc-wrapper <<'SRC'
#!/bin/sh
# cc-wrapper: logs a compiler invocation, then runs it.
echo "[cwrappers] $*" >&2
exec "$@"
SRC
echo "=> Installing into $DESTDIR"
mkdir -p "$DESTDIR/libexec/cwrappers" "$DESTDIR/share/cwrappers"
cp cc-wrapper "$DESTDIR/libexec/cwrappers/cc-wrapper"
chmod 755 "$DESTDIR/libexec/cwrappers/cc-wrapper"
echo "$PKGVERSION" > "$DESTDIR/share/cwrappers/VERSION"
