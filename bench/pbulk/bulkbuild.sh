#!/usr/bin/env bash
# Runs pbulk's own bulkbuild of ../shared/pkgsrc/limited-list.txt on this
# host, configured as ../shared/pkgsrc/README.md describes ("Running pbulk
# side by side"), so e2e:pkgsrc's wall times have pbulk's beside them from
# the same machine at the same time. pbulk must be installed in /usr/pbulk
# first (the README's recipe). Writes /usr/pbulk/etc/pbulk.conf.
#
#   bench/pbulk/bulkbuild.sh PKGSRC_TREE RUN_DIR
#
# pbulk's client-clean wipes /usr/pkg: do not run it while pkgfarm builds
# outside its sandboxes on this host.
set -euo pipefail
tree=$(cd "$1" && pwd)
run=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
shared=$(cd "$here/../shared/pkgsrc" && pwd)
[ -x /usr/pbulk/bin/bulkbuild ] || { echo "pbulk is not installed in /usr/pbulk" >&2; exit 1; }
id pbulk >/dev/null 2>&1 || useradd -r pbulk

rm -rf "$run"
mkdir -p "$run/kit" "$run/work" "$run/packages" "$run/bulklog"
chown pbulk "$run/work"
# pbulk does not pass PACKAGES or WRKOBJDIR to make: they go into the kit's
# mk.conf, which client-clean restores before every build.
tar -xzf "$shared/bootstrap-kit-linux-x86_64.tgz" -C "$run/kit"
sed -i "s|^\.endif|PACKAGES=\t$run/packages\nWRKOBJDIR=\t$run/work\n.endif|" "$run/kit/usr/pkg/etc/mk.conf"
tar -czf "$run/kit.tgz" -C "$run/kit" usr

conf=/usr/pbulk/etc/pbulk.conf
[ -f "$conf.dist" ] || cp "$conf" "$conf.dist"
sed -e "s|^master_mode=.*|master_mode=no|" \
    -e "s|^bootstrapkit=.*|bootstrapkit=$run/kit.tgz|" \
    -e "s|^bulklog=.*|bulklog=$run/bulklog|" \
    -e "s|^packages=.*|packages=$run/packages|" \
    -e "s|^pkgsrc=.*|pkgsrc=$tree|" \
    -e "s|^prefix=.*|prefix=/usr/pkg|" \
    -e "s|^pkgdb=.*|pkgdb=/usr/pkg/pkgdb|" \
    -e "s|^varbase=.*|varbase=/usr/pkg/var|" \
    -e "s|^rsync=.*|rsync=:|" \
    -e "s|^mail=.*|mail=:|" \
    -e "s|^#limited_list=.*|limited_list=$shared/limited-list.txt|" \
    "$conf.dist" > "$conf"
grep -q "^limited_list=" "$conf" || echo "limited_list=$shared/limited-list.txt" >> "$conf"

# pbulk leaves the last build's prefix in /usr/pkg; pkgfarm's host only ever
# has an empty mount point there, so empty it again however pbulk ends.
trap 'find /usr/pkg -mindepth 1 -delete 2>/dev/null || true' EXIT
start=$(date +%s.%N)
/usr/pbulk/bin/bulkbuild > "$run/bulkbuild.out" 2>&1
end=$(date +%s.%N)
echo "{\"pbulkSeconds\":$(echo "$end - $start" | bc),\"report\":\"$run/bulklog/meta/report.txt\"}"
