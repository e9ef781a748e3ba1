# cowsay @VERSION@ (run by perl)
COWSAY_VERSION=@VERSION@
cowsay_main() {
	case ${1-} in
	--version)
		echo "cowsay $COWSAY_VERSION"
		return 0 ;;
	-h|--help)
		echo "Usage: cowsay [MESSAGE]..."
		echo "A configurable speaking cow, example edition."
		return 0 ;;
	esac
	_cow_msg=${*:-moo}
	_cow_line=$(printf '%s' "$_cow_msg" | sed 's/./-/g')
	echo " -$_cow_line-"
	echo "< $_cow_msg >"
	echo " -$_cow_line-"
	cat <<'COW'
        \   ^__^
         \  (oo)\_______
            (__)\       )\/\
                ||----w |
                ||     ||
COW
}
cowsay_main "$@"
