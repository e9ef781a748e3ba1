#!/bin/sh
set -eu
echo "=> Building cowsay $PKGVERSION with $(perl -v)"
sed "s|@VERSION@|${PKGVERSION%nb*}|g" "$FILESDIR/cowsay.pl" > cowsay.pl
printf '#!/bin/sh\nexec perl "%s/cowsay.pl" "$@"\n' "$(pwd)" > cowsay
chmod 755 cowsay
./cowsay "moo from the build"
echo "=> Making the man page with help2man"
help2man ./cowsay > cowsay.1
echo "=> Installing"
mkdir -p "$DESTDIR/bin" "$DESTDIR/share/cowsay" "$DESTDIR/man/man1"
cp cowsay.pl "$DESTDIR/share/cowsay/cowsay.pl"
cp cowsay.1 "$DESTDIR/man/man1/cowsay.1"
cat > "$DESTDIR/bin/cowsay" <<'SRC'
#!/bin/sh
prefix=$(cd "$(dirname "$0")/.." && pwd)
exec "$prefix/bin/perl" "$prefix/share/cowsay/cowsay.pl" "$@"
SRC
chmod 755 "$DESTDIR/bin/cowsay"
