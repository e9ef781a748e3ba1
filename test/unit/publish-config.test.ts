import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { loadDispatcherConfig } from "../../services/dispatcher/config.js";

test("--publish-interval-seconds: 5 s by default, 0 turns publishing off, the flag wins, a bad value is one clear error; reports and repository live in the data dir", () => {
  const load = (argv: readonly string[], env: NodeJS.ProcessEnv = {}) => {
    const config = loadDispatcherConfig(argv, env);
    if ("errors" in config) throw new Error(config.errors.join("; "));
    return config;
  };
  assert.equal(load([]).publishIntervalMs, 5000);
  assert.equal(load(["--publish-interval-seconds", "0"]).publishIntervalMs, 0);
  assert.equal(load(["--publish-interval-seconds=30"], { PKGFARM_PUBLISH_INTERVAL_SECONDS: "2" }).publishIntervalMs, 30_000);
  assert.equal(load([], { PKGFARM_PUBLISH_INTERVAL_SECONDS: "2" }).publishIntervalMs, 2000);
  const config = load(["--data-dir", "/srv/pkgfarm"]);
  assert.equal(config.reportsRoot, join("/srv/pkgfarm", "reports"));
  assert.equal(config.repositoryRoot, join("/srv/pkgfarm", "repository"));
  for (const bad of ["often", "-1", "3601", "1.5"]) {
    const refused = loadDispatcherConfig([`--publish-interval-seconds=${bad}`], {});
    assert.ok("errors" in refused, bad);
    assert.equal(refused.errors.length, 1, bad);
    assert.match(refused.errors[0]!, /^--publish-interval-seconds \(PKGFARM_PUBLISH_INTERVAL_SECONDS\) must be a whole number from 0 to 3600/);
  }
});
