// One class per failure the core can report. Adapters map them to gRPC codes
// in one place (services/depgraph/status.ts); the core never knows about codes.

/** InvalidScanRecord: a pbulk-index record that cannot be taken as it is. */
export class InvalidScanRecord extends Error {
  override readonly name = "InvalidScanRecord";
  constructor(
    readonly line: number,
    readonly location: string,
    readonly pkgname: string,
    readonly problem: string,
  ) {
    super(`line ${line}${location ? ` (${location})` : ""}: ${problem}`);
  }
}

/** InvalidRequest: a caller asked for something malformed; the message says what. */
export class InvalidRequest extends Error {
  override readonly name = "InvalidRequest";
}

/** UnknownBuild: no build has this id. */
export class UnknownBuild extends Error {
  override readonly name = "UnknownBuild";
  constructor(readonly buildId: string) {
    super(`no build has id "${buildId}"`);
  }
}

/** UnknownScan: no scan has this id (it never existed, or was forgotten). */
export class UnknownScan extends Error {
  override readonly name = "UnknownScan";
  constructor(readonly scanId: string) {
    super(`no scan has id "${scanId.slice(0, 200)}"`);
  }
}

/** UnknownPackage: the tree has no package of this name or location. */
export class UnknownPackage extends Error {
  override readonly name = "UnknownPackage";
  constructor(readonly what: string) {
    super(`the tree has no package or location "${what}"`);
  }
}

/**
 * StaleLease: a lease that is no longer held (expired, returned, finished,
 * or never issued). Refusing it is what stops a job from being finished twice.
 */
export class StaleLease extends Error {
  override readonly name = "StaleLease";
  constructor(
    readonly buildId: string,
    readonly pkgname: string,
    readonly leaseId: string,
    readonly why: string,
  ) {
    super(`lease "${leaseId}" on ${pkgname} in build ${buildId} is not held: ${why}`);
  }
}

/** EmptyTree: a build was asked for before any package was imported. */
export class EmptyTree extends Error {
  override readonly name = "EmptyTree";
  constructor() {
    super("the tree has no packages yet: import a scan (ImportScan or `pkgfarm import`) first");
  }
}
