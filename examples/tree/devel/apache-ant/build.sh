#!/bin/sh
set -eu
echo "=> Building Apache Ant $PKGVERSION with $(java -version 2>&1)"
mkdir -p "$DESTDIR/bin"
printf '#!/bin/sh\nexec java -jar ant.jar "$@"\n' > "$DESTDIR/bin/ant"
