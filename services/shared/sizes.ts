// Sizes of memory and disk as operators write them and people read them.

const UNITS: readonly (readonly [string, number])[] = [["T", 2 ** 40], ["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]];

/** formatBytes writes a size for people, in binary units: "16 GiB", "1.5 GiB", "512 MiB", "900 B". */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of UNITS) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(1))} ${unit}iB`;
  }
  return `${bytes} B`;
}

/**
 * parseSize reads a size as operators write it: "16G", "16GiB", "512M",
 * "1.5T", "4096" (bytes); binary units (K = 1024). Undefined when it is not one.
 */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (match === null) return undefined;
  const unit = match[2]!.toUpperCase();
  const size = unit === "" ? 1 : UNITS.find(([u]) => u === unit)![1];
  return Math.round(Number(match[1]) * size);
}
