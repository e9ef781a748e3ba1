# setuptools @VERSION@ for Python @PYSHORT@, example edition.
SETUPTOOLS_VERSION=@VERSION@
# setup NAME VERSION MODULE.py...: installs the modules into DESTDIR's
# site-packages with a dist-info directory naming who installed them.
setup() {
	_st_name=$1
	_st_version=$2
	shift 2
	_st_dest="$DESTDIR/lib/python$PYTHON_SHORT/site-packages"
	mkdir -p "$_st_dest/$_st_name-$_st_version.dist-info" || return 1
	for _st_m in "$@"; do
		echo "copying $_st_m -> $_st_dest"
		{
			echo "# $_st_name $_st_version, installed by setuptools $SETUPTOOLS_VERSION for Python $PYTHON_VERSION"
			cat "$_st_m"
		} > "$_st_dest/$(basename "$_st_m")" || return 1
	done
	printf 'Metadata-Version: 2.1\nName: %s\nVersion: %s\nInstaller: setuptools %s\nRequires-Python: ==%s\n' \
		"$_st_name" "$_st_version" "$SETUPTOOLS_VERSION" "$PYTHON_VERSION" > "$_st_dest/$_st_name-$_st_version.dist-info/METADATA"
}
setuptools_main() {
	echo "setuptools $SETUPTOOLS_VERSION (Python $PYTHON_VERSION)"
}
