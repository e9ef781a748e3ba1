// What a package's name and location say about its kin, for the duration
// model (see duration-model.ts): pkgsrc names a version after the last
// hyphen, and puts a language's version (py313-, php82-) or a major version
// (gcc14, qt6-) in digits.

/** PKGBASE: the PKGNAME without its version (what follows the last hyphen). */
export function pkgbaseOf(pkgname: string): string {
  const at = pkgname.lastIndexOf("-");
  return at <= 0 ? pkgname : pkgname.slice(0, at);
}

/**
 * The name's relatives key: PKGBASE without digits, so py312-foo, py313-foo,
 * gcc12, gcc14, qt5-qtbase and qt6-qtbase meet their kin. A name that is all
 * digits and punctuation keeps itself.
 */
export function relativesKey(pkgname: string): string {
  const base = pkgbaseOf(pkgname);
  const key = base.replace(/[0-9]+/g, "");
  return /[A-Za-z]/.test(key) ? key : base;
}

/** The name family: the first word of a hyphenated PKGBASE without digits (py, p, php, qt, tex, R ...), "" for one word. */
export function familyOf(pkgname: string): string {
  const base = pkgbaseOf(pkgname);
  const at = base.indexOf("-");
  return at <= 0 ? "" : base.slice(0, at).replace(/[0-9]+/g, "");
}

/** The primary category: the location's directory, which every package has. */
export function categoryOf(p: { readonly location: string; readonly categories: readonly string[] }): string {
  const at = p.location.indexOf("/");
  return at < 0 ? p.categories[0] ?? "" : p.location.slice(0, at);
}
