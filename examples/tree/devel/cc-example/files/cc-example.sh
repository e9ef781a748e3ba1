#!/bin/sh
# cc-example @VERSION@, the example tree's C compiler (cwrappers @CWRAPPERS_VERSION@).
#
# Programs are shell scripts; objects and libraries are shell fragments that
# define functions. Linking a program copies every library it names into it
# (-lNAME is lib/libNAME.sh, looked up in the -L directories, then in the
# prefix cc-example is installed in), so a program carries the code of what
# it was built against.
#
#   cc-example [-c] [-o OUT] [-L DIR]... [-lNAME]... SOURCE...
#   cc-example --version
set -u
CC_VERSION=@VERSION@
CWRAPPERS_VERSION=@CWRAPPERS_VERSION@
nl='
'
prefix=$(cd "$(dirname "$0")/.." && pwd)
die() {
	echo "cc-example: $*" >&2
	exit 1
}
libdirs=
linked=
sources=
out=a.out
compile_only=no
while [ $# -gt 0 ]; do
	case $1 in
	--version)
		echo "cc-example $CC_VERSION (cwrappers $CWRAPPERS_VERSION)"
		exit 0 ;;
	-c) compile_only=yes ;;
	-o)
		[ $# -ge 2 ] || die "-o needs a file name"
		out=$2
		shift ;;
	-L)
		[ $# -ge 2 ] || die "-L needs a directory"
		libdirs="$libdirs$2$nl"
		shift ;;
	-L?*) libdirs="$libdirs${1#-L}$nl" ;;
	-l?*)
		lib=
		while IFS= read -r d; do
			if [ -n "$d" ] && [ -f "$d/lib${1#-l}.sh" ]; then
				lib="$d/lib${1#-l}.sh"
				break
			fi
		done <<LIBDIRS
$libdirs$prefix/lib
LIBDIRS
		[ -n "$lib" ] || die "cannot find -l${1#-l} (searched $(printf '%s' "$libdirs$prefix/lib" | tr '\n' ' '))"
		linked="$linked$lib$nl" ;;
	-*) die "unknown option $1" ;;
	*)
		[ -f "$1" ] || die "$1: No such file or directory"
		sources="$sources$1$nl" ;;
	esac
	shift
done
[ -n "$sources" ] || die "no input files"
tmp="$out.tmp.$$"
{
	[ $compile_only = yes ] || echo '#!/bin/sh'
	echo "# $(basename "$out"): compiled by cc-example $CC_VERSION (cwrappers $CWRAPPERS_VERSION)"
	while IFS= read -r f; do
		[ -n "$f" ] || continue
		echo "# linked: $(basename "$f")"
		cat "$f"
	done <<LINKED
$linked
LINKED
	while IFS= read -r f; do
		[ -n "$f" ] || continue
		cat "$f"
	done <<SOURCES
$sources
SOURCES
} > "$tmp" || {
	rm -f "$tmp"
	die "cannot write $out"
}
if [ $compile_only = yes ]; then chmod 644 "$tmp"; else chmod 755 "$tmp"; fi
mv "$tmp" "$out"
