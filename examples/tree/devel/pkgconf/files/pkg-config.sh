# pkg-config (pkgconf @VERSION@, example edition). Reads NAME.pc files from
# $PKG_CONFIG_LIBDIR, else lib/pkgconfig of the prefix it is installed in.
#   pkg-config --modversion NAME...
#   pkg-config --libs NAME...       (Requires: followed, duplicates dropped)
#   pkg-config --exists NAME...
PKGCONF_VERSION=@VERSION@
pc_dir=${PKG_CONFIG_LIBDIR:-$(cd "$(dirname "$0")/.." && pwd)/lib/pkgconfig}
pc_file() {
	_pcf="$pc_dir/$1.pc"
	if [ ! -f "$_pcf" ]; then
		echo "pkg-config: Package $1 was not found in the pkg-config search path" >&2
		return 1
	fi
	printf '%s\n' "$_pcf"
}
pc_field() {
	sed -n "s/^$2:[[:space:]]*//p" "$1" | head -n 1
}
pc_libs() {
	_pcf=$(pc_file "$1") || return 1
	pc_field "$_pcf" Libs | tr ' ' '\n'
	for _req in $(pc_field "$_pcf" Requires | tr ',' ' '); do
		pc_libs "$_req" || return 1
	done
}
pkgconfig_main() {
	_mode=
	_names=
	for _a in "$@"; do
		case $_a in
		--version)
			echo "$PKGCONF_VERSION"
			return 0 ;;
		--modversion|--libs|--exists) _mode=$_a ;;
		--static|--print-errors) ;;
		-*)
			echo "pkg-config: unknown option $_a" >&2
			return 1 ;;
		*) _names="$_names $_a" ;;
		esac
	done
	if [ -z "$_mode" ] || [ -z "$_names" ]; then
		echo "usage: pkg-config --modversion|--libs|--exists NAME..." >&2
		return 1
	fi
	for _n in $_names; do
		case $_mode in
		--exists) pc_file "$_n" > /dev/null 2>&1 || return 1 ;;
		--modversion)
			_f=$(pc_file "$_n") || return 1
			pc_field "$_f" Version ;;
		esac
	done
	if [ "$_mode" = --libs ]; then
		_all=$(for _n in $_names; do pc_libs "$_n" || exit 1; done) || return 1
		printf '%s\n' "$_all" | awk 'NF && !seen[$0]++' | tr '\n' ' ' | sed 's/ *$//'
		echo
	fi
}
pkgconfig_main "$@"
