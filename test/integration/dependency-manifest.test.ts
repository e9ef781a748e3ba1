// A caller that keeps a build's dependency manifest (GetDependencyManifest)
// and asks NextReadyJob to leave dependency_packages out works out exactly
// the closure the old field lists, and each answer carries only the direct
// dependencies, deep in the graph as at its bottom.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { DepGraphService, JobOutcome, MarkDoneRequestSchema, type Assignment, type DependencyManifestEntry } from "../../gen/pkgfarm/v1/depgraph_pb.js";
import type { RunningDepGraph } from "../../services/depgraph/server.js";
import { createPkgfarmTransport } from "../../services/shared/index.js";
import { startTestDepGraph } from "../support/depgraph-server.js";

const DEPTH = 40;
const WITH_MANIFEST = "Manifest-1.0-x86_64";
const WITH_CLOSURE = "Closure-1.0-x86_64";

/** A chain of DEPTH packages, each also needing base directly: every closure shares base. */
function scan(): string {
  const lines = ["PKGNAME=base-1.0", "PKG_LOCATION=devel/base", "ALL_DEPENDS="];
  for (let i = 0; i < DEPTH; i++) {
    const deps = ["base>=1.0:../../devel/base"];
    if (i > 0) deps.push(`chain${i - 1}>=1.0:../../devel/chain${i - 1}`);
    lines.push(`PKGNAME=chain${i}-1.0`, `PKG_LOCATION=devel/chain${i}`, `ALL_DEPENDS=${deps.join(" ")}`);
  }
  return lines.join("\n") + "\n";
}

let server: RunningDepGraph;
let client: Client<typeof DepGraphService>;

before(async () => {
  server = await startTestDepGraph();
  client = createClient(DepGraphService, createPkgfarmTransport(server.url));
  await client.importScan((async function* () {
    yield { pbulkIndex: scan() };
  })());
});

after(async () => {
  await server.close();
});

function done(a: Assignment) {
  const name = a.package!.pkgname;
  return create(MarkDoneRequestSchema, {
    results: [{
      buildId: a.buildId, pkgname: name, leaseId: a.leaseId, outcome: JobOutcome.SUCCEEDED, duration: durationFromMs(10),
      binaryPackage: { fileName: `${name}.tgz`, sha256: "cd".repeat(32), sizeBytes: BigInt(name.length) },
    }],
  });
}

/** ManifestCopy is what a dispatcher would keep of one build's manifest. */
function manifestCopy(buildId: string) {
  const entries = new Map<string, DependencyManifestEntry>();
  let size = 0;
  let generation = "";
  return {
    async upTo(needed: number, neededGeneration: string) {
      if (generation !== neededGeneration) {
        entries.clear();
        size = 0;
        generation = neededGeneration;
      }
      while (size < needed) {
        const part = await client.getDependencyManifest({ buildId, offset: size });
        assert.equal(part.generation, neededGeneration);
        assert.equal(part.offset, size);
        assert.ok(part.entries.length > 0, "the manifest has the entries an assignment said it has");
        for (const entry of part.entries) entries.set(entry.pkgname, entry);
        size += part.entries.length;
      }
    },
    closure(direct: readonly string[]): string[] {
      const seen = new Set<string>();
      const stack = [...direct];
      while (stack.length > 0) {
        const name = stack.pop()!;
        if (seen.has(name)) continue;
        seen.add(name);
        const entry = entries.get(name);
        assert.ok(entry !== undefined, `${name} is in the manifest`);
        stack.push(...entry.dependencies);
      }
      return [...seen].map((name) => entries.get(name)!.binaryPackage!.fileName).sort();
    },
    get fetched() {
      return size;
    },
  };
}

test("the closure worked out from the manifest is the one dependency_packages lists, and answers carry direct dependencies only", async () => {
  const manifestBuild = (await client.createBuild({ platform: WITH_MANIFEST })).build!;
  const closureBuild = (await client.createBuild({ platform: WITH_CLOSURE })).build!;
  const copy = manifestCopy(manifestBuild.id);
  for (let step = 0; step <= DEPTH; step++) {
    const [lean] = (await client.nextReadyJob({ platform: WITH_MANIFEST, agentId: "a", omitDependencyPackages: true })).assignments;
    const [full] = (await client.nextReadyJob({ platform: WITH_CLOSURE, agentId: "b" })).assignments;
    assert.ok(lean !== undefined && full !== undefined);
    assert.equal(lean.package!.pkgname, full.package!.pkgname, "both builds go the same way");
    assert.equal(lean.buildId, manifestBuild.id);
    assert.equal(full.buildId, closureBuild.id);
    assert.deepEqual(lean.dependencyPackages, [], "left out when asked");
    assert.ok(lean.dependencies.length <= 2, "direct dependencies only");
    assert.deepEqual([...lean.dependencies].sort(), [...full.dependencies].sort());
    await copy.upTo(lean.manifestSize, lean.manifestGeneration);
    assert.deepEqual(copy.closure(lean.dependencies), full.dependencyPackages.map((p) => p.fileName).sort());
    // Deep in the chain the old field has a whole closure, the lean answer two names.
    if (step === DEPTH) assert.equal(full.dependencyPackages.length, DEPTH);
    await client.markDone(done(lean));
    await client.markDone(done(full));
  }
  // Each entry was fetched once: the copy grew by one job per step.
  assert.equal(copy.fetched, DEPTH);
  const whole = await client.getDependencyManifest({ buildId: manifestBuild.id });
  assert.equal(whole.size, DEPTH + 1);
  assert.deepEqual(whole.entries.map((e) => e.pkgname), ["base-1.0", ...Array.from({ length: DEPTH }, (_, i) => `chain${i}-1.0`)]);
  assert.equal(whole.entries[1]!.binaryPackage?.sha256, "cd".repeat(32));
});

test("GetDependencyManifest refuses an unknown build and an offset past the end", async () => {
  await assert.rejects(client.getDependencyManifest({ buildId: "no-such-build" }), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound);
  const build = (await client.createBuild({ platform: WITH_MANIFEST, limitTo: ["devel/base"] })).build!;
  await assert.rejects(client.getDependencyManifest({ buildId: build.id, offset: 5 }), (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument);
  assert.deepEqual((await client.getDependencyManifest({ buildId: build.id })).entries, []);
});
