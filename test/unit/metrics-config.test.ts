import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { loadDepGraphConfig } from "../../services/depgraph/config.js";
import { loadDispatcherConfig } from "../../services/dispatcher/config.js";

type Load = (argv: readonly string[], env: NodeJS.ProcessEnv) => { metricsPort?: number } | { errors: string[] };

describe("--metrics-port / PKGFARM_METRICS_PORT", () => {
  const services: [string, Load][] = [["depgraph", loadDepGraphConfig], ["dispatcher", loadDispatcherConfig]];
  for (const [service, load] of services) {
    const metricsPort = (argv: readonly string[], env: NodeJS.ProcessEnv) => {
      const config = load(argv, env);
      if ("errors" in config) throw new Error(config.errors.join("; "));
      return config.metricsPort;
    };
    test(`${service}: off unless set; the flag wins over the variable; a bad value is one clear error`, () => {
      assert.equal(metricsPort([], {}), undefined);
      assert.equal(metricsPort([], { PKGFARM_METRICS_PORT: "" }), undefined);
      assert.equal(metricsPort([], { PKGFARM_METRICS_PORT: "9401" }), 9401);
      assert.equal(metricsPort(["--metrics-port", "0"], { PKGFARM_METRICS_PORT: "9401" }), 0);
      for (const bad of ["http", "-1", "65536", "9401.5"]) {
        const refused = load([`--metrics-port=${bad}`], {});
        assert.ok("errors" in refused, bad);
        assert.deepEqual(refused.errors, [`--metrics-port (PKGFARM_METRICS_PORT) must be a whole number from 0 to 65535, not "${bad}"`]);
      }
    });
  }
});
