#!/bin/sh
set -eu
echo "=> Building SCons $PKGVERSION with $(python3.13 --version)"
python3.13 -c 'py_import six && six_version'
mkdir -p "$DESTDIR/bin" "$DESTDIR/lib/scons"
cat > "$DESTDIR/lib/scons/scons.py" <<SRC
# SCons $PKGVERSION, example edition
py_import six || exit 1
scons_main() {
	case \${1-} in
	--version) echo "SCons $PKGVERSION on Python \$PYTHON_VERSION with \$(six_version)" ;;
	*) echo "scons: building \${1:-.}: nothing to be done" ;;
	esac
}
scons_main "\$@"
SRC
cat > "$DESTDIR/bin/scons" <<'SRC'
#!/bin/sh
prefix=$(cd "$(dirname "$0")/.." && pwd)
exec "$prefix/bin/python3.13" "$prefix/lib/scons/scons.py" "$@"
SRC
chmod 755 "$DESTDIR/bin/scons"
echo "=> Testing"
python3.13 "$DESTDIR/lib/scons/scons.py" --version
