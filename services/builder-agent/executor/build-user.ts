// ensureBuildUser finds (or makes) pbulk's unprivileged_user: the account
// that configures, builds and stage-installs USE_DESTDIR packages, so that a
// package whose install rules write outside its DESTDIR fails instead of
// writing into the prefix. pbulk's README has the operator run `useradd`; the
// agent does it once at start-up when the user is missing.

import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface BuildUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/** BuildUserUnavailable: the user does not exist and could not be created. */
export class BuildUserUnavailable extends Error {
  override readonly name = "BuildUserUnavailable";
  constructor(readonly user: string, detail: string) {
    super(`the build user ${user} does not exist and could not be created: ${detail}`);
  }
}

async function lookup(name: string): Promise<BuildUser | undefined> {
  try {
    const uid = Number((await run("id", ["-u", name])).stdout.trim());
    const gid = Number((await run("id", ["-g", name])).stdout.trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { name, uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

export async function ensureBuildUser(name: string): Promise<BuildUser> {
  const found = await lookup(name);
  if (found !== undefined) return found;
  try {
    await run("useradd", ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]);
  } catch (e) {
    // Another agent on this host may have created it meanwhile.
    const again = await lookup(name);
    if (again !== undefined) return again;
    throw new BuildUserUnavailable(name, e instanceof Error ? e.message.split("\n")[0]! : String(e));
  }
  const made = await lookup(name);
  if (made === undefined) throw new BuildUserUnavailable(name, "useradd succeeded but id does not find it");
  return made;
}
