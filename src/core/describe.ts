/**
 * Any value as text for a message. A user's code may throw, and a user may pass, what String()
 * itself throws on (an object without a prototype, or whose toString throws): the message about
 * it must not become a TypeError of its own.
 */
export function describe(value: unknown): string {
  try {
    return String(value);
  } catch {
    // A Proxy throws from this too (a revoked one always).
    try {
      return Object.prototype.toString.call(value);
    } catch {
      const type = typeof value;
      return `${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type} that cannot be read`;
    }
  }
}
