#!/bin/sh
set -eu
echo "=> Configuring gawk $PKGVERSION"
cat > gawk.c <<SRC
gawk_main() {
	case \${1-} in
	--version) echo "GNU Awk $PKGVERSION, API 4.0 (\$(readline_version))" ;;
	*) awk "\$@" ;;
	esac
}
gawk_main "\$@"
SRC
cat > GNUmakefile <<'MK'
all:
	cc-example -o gawk -lreadline -lncurses gawk.c
check:
	test "$(echo 1 2 | ./gawk '{ print $2 }')" = 2
	./gawk --version
install:
	mkdir -p "$DESTDIR/bin"
	cp gawk "$DESTDIR/bin/gawk"
MK
gmake
gmake check
gmake install
