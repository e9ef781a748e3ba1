import { pino } from "pino";
import type { DepGraphConfig } from "../../services/depgraph/config.js";
import { startDepGraphServer, type RunningDepGraph } from "../../services/depgraph/server.js";

/** startTestDepGraph runs a real depgraph on a free loopback port, logging nothing. */
export function startTestDepGraph(overrides: Partial<DepGraphConfig> = {}): Promise<RunningDepGraph> {
  return startDepGraphServer(
    {
      host: "127.0.0.1",
      port: 0,
      packagesDir: "",
      scanHelper: [],
      scanBatch: 1,
      treeDir: ".",
      historyFile: "",
      importFile: "",
      defaultPolicy: "critical-path",
      defaultLeaseMs: 60_000,
      maxLeaseMs: 3_600_000,
      maxLosses: 3,
      keepFinishedBuilds: 20,
      logLevel: "silent",
      natsUrl: "",
      state: "memory",
      stateBucket: "pkgfarm-depgraph",
      ...overrides,
    },
    pino({ level: "silent" }),
  );
}

/** A pbulk-index scan of a small tree: a chain, a MULTI_VERSION family, a prefailed package. */
export const SMALL_SCAN = `PKGNAME=cwrappers-20220403
PKG_LOCATION=pkgtools/cwrappers
ALL_DEPENDS=
PKG_SKIP_REASON=
PKG_FAIL_REASON=
CATEGORIES=pkgtools
SCAN_DEPENDS=../../mk/bsd.pkg.mk
PKGNAME=gmake-4.4.1
PKG_LOCATION=devel/gmake
ALL_DEPENDS=cwrappers>=20150314:../../pkgtools/cwrappers
PKG_SKIP_REASON=
PKG_FAIL_REASON=
CATEGORIES=devel
PKGNAME=python313-3.13.1
PKG_LOCATION=lang/python313
ALL_DEPENDS=gmake>=3.81:../../devel/gmake
CATEGORIES=lang
PKGNAME=py313-six-1.17.0
PKG_LOCATION=lang/py-six
ALL_DEPENDS=python313>=3.13:../../lang/python313
MULTI_VERSION= PYTHON_VERSION_REQD=313
PKGNAME=py312-six-1.17.0
PKG_LOCATION=lang/py-six
ALL_DEPENDS=python312>=3.12:../../lang/python312
MULTI_VERSION= PYTHON_VERSION_REQD=312
PKGNAME=broken-1.0
PKG_LOCATION=misc/broken
ALL_DEPENDS=gmake>=3.81:../../devel/gmake
PKG_FAIL_REASON="marked broken on NetBSD"
PKGNAME=bad-record-1.0
PKG_LOCATION=misc/bad
ALL_DEPENDS=gmake>=3.81:devel/gmake
`;
