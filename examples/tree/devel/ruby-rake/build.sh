#!/bin/sh
set -eu
echo "=> Building rake $PKGVERSION with $(ruby33)"
mkdir -p "$DESTDIR/bin"
printf '#!/bin/sh\necho "rake, version %s"\n' "$PKGVERSION" > "$DESTDIR/bin/rake"
chmod 755 "$DESTDIR/bin/rake"
