/** The first line of the innermost cause: the part that says what is actually missing. */
export function firstLine(error: unknown): string {
  let root = error;
  while (root instanceof Error && root.cause !== undefined) root = root.cause;
  const message = root instanceof Error ? root.message : String(root);
  return (message.split('\n').find((line) => line.trim() !== '') ?? message).trim().slice(0, 300);
}
