#!/bin/sh
set -eu
out="$DESTDIR/share/example-world"
mkdir -p "$out"
echo "=> Collecting the world"
ls "$PKG_DBDIR" > "$out/packages.txt"
{
	curl --version
	sqlite3 --version
	scons --version
	python3.12 -VV
	python3.12 -c 'py_import six && six_version'
	python3.13 -VV
	perl -v
	cowsay --version
	xmllint --version
	gawk --version
	gsed --version
	xz --version
	openssl version
} > "$out/versions.txt"
cat "$out/versions.txt"
cowsay "$(wc -l < "$out/packages.txt" | tr -d ' ') packages built by pkgfarm" | tee "$out/motd"
