// The repository a platform's packages are published as (pkgin, pkg_add URL).
export { publishRepository, InvalidRepositoryEntry, RepositoryPackageMissing, RepositoryTargetInvalid } from "./write.js";
export type { PublishedPackage, PublishedRepository, PublishRepositoryOptions } from "./write.js";
export { selectPublishable, bytewise } from "./publishable.js";
export type { PublishCandidate, PublishSelection, Withheld } from "./publishable.js";
export { bzip2, Bzip2Failed, Bzip2Unavailable } from "./bzip2.js";
