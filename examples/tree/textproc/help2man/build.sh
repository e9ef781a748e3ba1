#!/bin/sh
set -eu
echo "=> Building help2man $PKGVERSION with $(perl -v)"
gsed "s|@VERSION@|$PKGVERSION|g" "$FILESDIR/help2man.pl" > help2man.pl
echo "=> Testing: a man page for gsed"
perl help2man.pl "$PREFIX/bin/gsed" > gsed.1
cat gsed.1
echo "=> Installing"
mkdir -p "$DESTDIR/bin" "$DESTDIR/share/help2man"
cp help2man.pl "$DESTDIR/share/help2man/help2man.pl"
cat > "$DESTDIR/bin/help2man" <<'SRC'
#!/bin/sh
prefix=$(cd "$(dirname "$0")/.." && pwd)
exec "$prefix/bin/perl" "$prefix/share/help2man/help2man.pl" "$@"
SRC
chmod 755 "$DESTDIR/bin/help2man"
