#!/bin/sh
set -eu
echo "=> Building digest $PKGVERSION with $(cc-example --version)"
cat > digest.c <<SRC
# digest ALGORITHM FILE...: prints "ALGORITHM (FILE) = SUM" for each file.
digest_main() {
	case \${1-} in
	--version|-V) echo "$PKGVERSION"; return 0 ;;
	"") echo "usage: digest ALGORITHM FILE..." >&2; return 2 ;;
	esac
	_alg=\$1
	shift
	for _f in "\$@"; do
		_sum=\$(cksum < "\$_f" | awk '{ print \$1 }') || return 1
		echo "\$_alg (\$_f) = \$_sum"
	done
}
digest_main "\$@"
SRC
cc-example -o digest digest.c
echo "=> Testing"
./digest CKSUM digest.c
echo "=> Installing"
mkdir -p "$DESTDIR/bin"
cp digest "$DESTDIR/bin/digest"
