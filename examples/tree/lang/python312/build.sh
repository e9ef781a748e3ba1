#!/bin/sh
# Pythons link statically with everything: python3.X carries zlib, libffi,
# readline, ncurses, expat, liblzma and libbz2 inside it.
set -eu
short=$(echo "$PKGVERSION" | cut -d. -f1-2)
echo "=> Configuring Python $PKGVERSION"
for m in zlib libffi readline expat liblzma bzip2; do
	echo "checking for $m... $(pkg-config --modversion $m)"
done
PYLIBS=$(pkg-config --libs zlib libffi readline expat liblzma bzip2)
PYSHORT=$short
export PYLIBS PYSHORT
sed -e "s|@VERSION@|$PKGVERSION|g" -e "s|@SHORT@|$short|g" "$FILESDIR/python.sh" > python.c
cat > GNUmakefile <<'MK'
all:
	cc-example -o python$PYSHORT $PYLIBS python.c
test:
	./python$PYSHORT -VV
	./python$PYSHORT -c 'rl_prompt "Python $PYTHON_VERSION"'
install:
	mkdir -p "$DESTDIR/bin" "$DESTDIR/lib/python$PYSHORT/site-packages"
	cp python$PYSHORT "$DESTDIR/bin/python$PYSHORT"
	echo "# site.py for Python $PYSHORT" > "$DESTDIR/lib/python$PYSHORT/site.py"
MK
gmake
gmake test
gmake install
