# perl @VERSION@, example edition: scripts are shell code.
#   perl SCRIPT [ARG...] | perl -e CODE [ARG...] | perl -v
PERL_VERSION=@VERSION@
perl_main() {
	case ${1-} in
	-v|--version)
		echo "This is perl 5, version $(echo "$PERL_VERSION" | cut -d. -f2), subversion $(echo "$PERL_VERSION" | cut -d. -f3) (v$PERL_VERSION), example edition with $(zlib_version)" ;;
	-e)
		_perl_code=$2
		shift 2
		eval "$_perl_code" ;;
	"")
		echo "perl: no script given" >&2
		return 2 ;;
	*)
		_perl_script=$1
		shift
		case $_perl_script in */*) ;; *) _perl_script=./$_perl_script ;; esac
		if [ ! -f "$_perl_script" ]; then
			echo "Can't open perl script \"$_perl_script\": No such file or directory" >&2
			return 2
		fi
		. "$_perl_script" ;;
	esac
}
perl_main "$@"
