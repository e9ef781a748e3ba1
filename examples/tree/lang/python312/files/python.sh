# Python @VERSION@, example edition: scripts and modules are shell code.
#   python@SHORT@ SCRIPT [ARG...]      runs a script
#   python@SHORT@ -m MODULE [ARG...]   runs MODULE_main from site-packages/MODULE.py
#   python@SHORT@ -c CODE [ARG...]     runs CODE
#   python@SHORT@ -V | -VV             version; -VV adds the linked libraries
# Scripts load site-packages/NAME.py with py_import NAME.
PYTHON_VERSION=@VERSION@
PYTHON_SHORT=@SHORT@
py_prefix=$(cd "$(dirname "$0")/.." && pwd)
py_sitedir=$py_prefix/lib/python$PYTHON_SHORT/site-packages
py_import() {
	if [ ! -f "$py_sitedir/$1.py" ]; then
		echo "ModuleNotFoundError: No module named '$1' (Python $PYTHON_VERSION, $py_sitedir)" >&2
		return 1
	fi
	. "$py_sitedir/$1.py"
}
python_main() {
	case ${1-} in
	-V|--version) echo "Python $PYTHON_VERSION" ;;
	-VV) echo "Python $PYTHON_VERSION [$(zlib_version), $(ffi_version), $(readline_version), $(expat_version), $(lzma_version), $(bzip2_version)]" ;;
	-m)
		_py_mod=$2
		shift 2
		py_import "$_py_mod" || return 1
		"${_py_mod}_main" "$@" ;;
	-c)
		_py_code=$2
		shift 2
		eval "$_py_code" ;;
	"")
		echo "python$PYTHON_SHORT: no script given" >&2
		return 2 ;;
	*)
		_py_script=$1
		shift
		case $_py_script in */*) ;; *) _py_script=./$_py_script ;; esac
		if [ ! -f "$_py_script" ]; then
			echo "python$PYTHON_SHORT: can't open file '$_py_script': No such file or directory" >&2
			return 2
		fi
		. "$_py_script" ;;
	esac
}
python_main "$@"
