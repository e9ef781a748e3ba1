/**
 * quote prints a piece of caller input inside a message: JSON-quoted, so
 * control bytes and quotes arrive escaped, and cut to `max` characters, so
 * a 100 KB field is not echoed back whole (clients and terminals choke on
 * it, and some gRPC clients reset the stream over a huge grpc-message).
 */
export function quote(input: string, max = 200): string {
  if (input.length <= max) return JSON.stringify(input);
  return `${JSON.stringify(input.slice(0, max))}... (${input.length} characters)`;
}

/** clip cuts a message to at most `max` characters, saying how long it was. */
export function clip(message: string, max: number): string {
  if (message.length <= max) return message;
  const cut = `... (message cut from ${message.length} characters)`;
  return message.slice(0, Math.max(0, max - cut.length)) + cut;
}

/**
 * escapeControls makes a line safe to print on a terminal: C0 and C1 control
 * characters (ESC, CR, BEL ...) other than tab become \xNN, so a record or a
 * server message cannot move the cursor, retitle the window or hide text.
 */
export function escapeControls(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x08\x0a-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
