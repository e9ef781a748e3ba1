// One class per failure the core can report. Adapters map them to gRPC codes
// in one place (services/depgraph/status.ts); the core never knows about codes.

import { clip, quote } from "../../shared/quote.js";

/**
 * InvalidScanRecord: a pbulk-index record that cannot be taken as it is.
 * Location and PKGNAME come from the input, so they are cut to a length a
 * person can read; the problem quotes input only through quote().
 */
export class InvalidScanRecord extends Error {
  override readonly name = "InvalidScanRecord";
  readonly location: string;
  readonly pkgname: string;
  readonly problem: string;
  constructor(
    readonly line: number,
    location: string,
    pkgname: string,
    problem: string,
    /** The input ends inside this record: it was cut off (a truncated file, a killed scan). */
    readonly cutOff = false,
  ) {
    const where = clip(location, 200);
    super(`line ${line}${where ? ` (${where})` : ""}: ${clip(problem, 1000)}`);
    this.location = where;
    this.pkgname = clip(pkgname, 200);
    this.problem = clip(problem, 1000);
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
    super(`no build has id ${quote(buildId)}`);
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
    super(`the tree has no package or location ${quote(what)}`);
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
    super(`lease ${quote(leaseId, 100)} on ${quote(pkgname, 200)} in build ${quote(buildId, 100)} is not held: ${why}`);
  }
}

/** EmptyTree: a build was asked for before any package was imported. */
export class EmptyTree extends Error {
  override readonly name = "EmptyTree";
  constructor() {
    super("the tree has no packages yet: import a scan (ImportScan or `pkgfarm import`) first");
  }
}
