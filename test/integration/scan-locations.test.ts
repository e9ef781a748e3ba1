import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { DepGraphService } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { SMALL_SCAN, startTestDepGraph } from "../support/depgraph-server.js";

// The scan helper stands in for `bmake -C $tree/$location pbulk-index`: it
// prints the pbulk-index file kept at each location. The location arrives as
// an argument ($1), never spliced into the command string.
const HELPER = ["/bin/sh", "-c", 'cat "$PKGFARM_TREE/$1/pbulk-index"', "scan-helper"];

describe("ScanLocations runs the scan helper per location", () => {
  let tree: string;
  let server: RunningDepGraph;
  let client: Client<typeof DepGraphService>;

  before(async () => {
    tree = mkdtempSync(join(tmpdir(), "pkgfarm-tree-"));
    mkdirSync(join(tree, "devel/gmake"), { recursive: true });
    writeFileSync(join(tree, "devel/gmake/pbulk-index"), "PKGNAME=gmake-4.5.0\nPKG_LOCATION=devel/gmake\nALL_DEPENDS=cwrappers>=20150314:../../pkgtools/cwrappers\n");
    mkdirSync(join(tree, "misc/liar"), { recursive: true });
    writeFileSync(join(tree, "misc/liar/pbulk-index"), "PKGNAME=other-1.0\nPKG_LOCATION=misc/other\n");
    server = await startTestDepGraph({ scanHelper: HELPER, treeDir: tree });
    client = createClient(DepGraphService, createPkgfarmTransport(server.url));
    await client.importScan((async function* () {
      yield { pbulkIndex: SMALL_SCAN };
    })());
  });
  after(async () => {
    await server.close();
    rmSync(tree, { recursive: true, force: true });
  });

  test("a rescanned location replaces its packages and dependents re-resolve to it", async () => {
    const response = await client.scanLocations({ locations: ["devel/gmake"] });
    assert.equal(response.recordsImported, 1);
    assert.equal((await client.listPackages({ location: "devel/gmake" })).packages[0]?.pkgname, "gmake-4.5.0");
    assert.deepEqual((await client.getPackage({ pkgname: "python313-3.13.1" })).package?.dependencies, ["gmake-4.5.0"]);
  });

  test("a failing helper or a record for the wrong location is reported and the tree keeps its packages", async () => {
    const before = (await client.listPackages({})).packages.length;
    const response = await client.scanLocations({ locations: ["misc/absent", "misc/liar"] });
    assert.equal(response.recordsImported, 0);
    assert.ok(response.problems.some((p) => p.location === "misc/absent" && /scan helper failed/.test(p.message)), JSON.stringify(response.problems));
    assert.ok(response.problems.some((p) => p.location === "misc/liar" && /printed a record for misc\/other/.test(p.message)));
    assert.equal((await client.listPackages({})).packages.length, before);
  });

  test("a malformed location never reaches the helper", async () => {
    await assert.rejects(client.scanLocations({ locations: ["devel/gmake; rm -rf /"] }), (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument);
  });
});
