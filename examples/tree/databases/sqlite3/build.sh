#!/bin/sh
set -eu
echo "=> Configuring SQLite $PKGVERSION"
SQLITE_LIBS=$(pkg-config --libs readline zlib)
export SQLITE_LIBS
echo "checking libraries... $SQLITE_LIBS"
cat > sqlite3.c <<SRC
# libsqlite3 $PKGVERSION; needs -lz
sqlite3_libversion() { echo "$PKGVERSION (\$(zlib_version))"; }
SRC
cat > shell.c <<'SRC'
sqlite3_shell_main() {
	case ${1-} in
	--version) echo "$(sqlite3_libversion) with $(readline_version)" ;;
	*) rl_prompt "sqlite> ${2:-}" ;;
	esac
}
sqlite3_shell_main "$@"
SRC
cat > GNUmakefile <<'MK'
all:
	cc-example -c -o libsqlite3.sh sqlite3.c
	cc-example -o sqlite3 -L . -lsqlite3 $SQLITE_LIBS shell.c
check:
	./sqlite3 --version
	./sqlite3 test.db "select 1;"
install:
	mkdir -p "$DESTDIR/bin" "$DESTDIR/lib/pkgconfig"
	cp sqlite3 "$DESTDIR/bin/sqlite3"
	cp libsqlite3.sh "$DESTDIR/lib/libsqlite3.sh"
	printf 'Name: sqlite3\nVersion: %s\nRequires: zlib\nLibs: -lsqlite3\n' "$PKGVERSION" > "$DESTDIR/lib/pkgconfig/sqlite3.pc"
MK
gmake
gmake check
gmake install
