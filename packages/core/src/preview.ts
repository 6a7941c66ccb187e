// Values read from files, shown in error messages: whatever a hostile file holds, the message stays
// short and showing it cannot throw.

/**
 * A value for a message: numbers as they read (NaN and Infinity, which JSON would write as null),
 * anything else as its JSON, cut to `max` characters; a value nested too deep for JSON.stringify
 * (a RangeError of the call stack) is named as such.
 */
export function preview(value: unknown, max = 80): string {
  if (typeof value === 'number') return String(value);
  let json: string;
  try {
    json = JSON.stringify(value) ?? String(value);
  } catch {
    return Array.isArray(value) ? '[an array nested too deep to show]' : '{a value nested too deep to show}';
  }
  return json.length > max ? `${json.slice(0, max)}...` : json;
}
