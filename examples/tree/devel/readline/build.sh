#!/bin/sh
set -eu
echo "=> Configuring readline $PKGVERSION"
pkg-config --exists ncurses
echo "checking for ncurses... $(pkg-config --modversion ncurses)"
cat > readline.c <<SRC
# libreadline $PKGVERSION; needs -lncurses at link time
readline_version() { echo "readline/$PKGVERSION (\$(ncurses_version))"; }
rl_prompt() { nc_box "\$*"; }
SRC
cc-example -c -o libreadline.sh readline.c
echo "=> Testing against $(pkg-config --libs ncurses)"
cat > t.c <<'SRC'
readline_version
rl_prompt ready
SRC
cc-example -o t -L . -lreadline $(pkg-config --libs ncurses) t.c
./t
echo "=> Installing"
mkdir -p "$DESTDIR/lib/pkgconfig"
cp libreadline.sh "$DESTDIR/lib/libreadline.sh"
printf 'Name: readline\nVersion: %s\nRequires: ncurses\nLibs: -lreadline\n' "$PKGVERSION" > "$DESTDIR/lib/pkgconfig/readline.pc"
