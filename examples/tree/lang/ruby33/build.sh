#!/bin/sh
set -eu
echo "=> Configuring Ruby $PKGVERSION with $(bison --version)"
cat > ruby.c <<SRC
ruby_main() { echo "ruby $PKGVERSION (\$(zlib_version), \$(readline_version))"; }
ruby_main "\$@"
SRC
cc-example -o ruby33 -lz -lreadline -lncurses ruby.c
./ruby33
mkdir -p "$DESTDIR/bin"
cp ruby33 "$DESTDIR/bin/ruby33"
