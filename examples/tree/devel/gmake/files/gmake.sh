# GNU make @VERSION@, example edition: runs the recipe of one target.
# A target is "name:" at the start of a line; its recipe is the lines after
# it that start with a tab. Each recipe line is echoed, then run with sh -e;
# the first failing line stops the build, as make does.
#   gmake [-f FILE] [-C DIR] [TARGET]      (default: the first target)
GMAKE_VERSION=@VERSION@
gmake_main() {
	_file=GNUmakefile
	_target=
	while [ $# -gt 0 ]; do
		case $1 in
		--version)
			echo "GNU Make $GMAKE_VERSION (example edition)"
			return 0 ;;
		-f)
			_file=$2
			shift ;;
		-C)
			cd "$2" || return 2
			shift ;;
		-j*|-s) ;;
		-*)
			echo "gmake: unknown option $1" >&2
			return 2 ;;
		*) _target=$1 ;;
		esac
		shift
	done
	if [ ! -f "$_file" ]; then
		echo "gmake: *** No targets specified and no makefile found.  Stop." >&2
		return 2
	fi
	[ -n "$_target" ] || _target=$(sed -n 's/^\([A-Za-z0-9_.-]*\):.*/\1/p' "$_file" | head -n 1)
	_recipe=$(awk -v t="$_target" '
		/^[A-Za-z0-9_.-]+:/ { split($0, a, ":"); intarget = (a[1] == t); if (intarget) found = 1; next }
		intarget && /^\t/ { sub(/^\t/, ""); print }
		END { if (!found) exit 3 }' "$_file") || {
		echo "gmake: *** No rule to make target '$_target'.  Stop." >&2
		return 2
	}
	echo "gmake: Entering directory '$(pwd)'"
	while IFS= read -r _line; do
		[ -n "$_line" ] || continue
		echo "$_line"
		sh -ec "$_line" || {
			echo "gmake: *** [$_file: $_target] Error $?" >&2
			return 2
		}
	done <<RECIPE
$_recipe
RECIPE
	echo "gmake: Leaving directory '$(pwd)'"
}
gmake_main "$@"
