// Property-based tests of the JSON Lines and CSV readers (issue 23): any text gives rows or an Error
// naming the source and the line, never another throw, never a hang, never more out than came in
// (a row's strings are parts of the text). Rows written as CSV by the rules of RFC 4180 come back
// as they were written.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';

import { parseCsv, parseJsonl } from '../src/index.js';

const count = { cases: 0 };
const started = performance.now();
afterAll(() => {
  console.log(`[data fuzz] ${count.cases} generated cases in ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

/** Rows read, or the Error's message, after checking that any throw is an Error naming the line. */
function read<T>(rows: () => Iterable<T>, source: string): T[] | string {
  try {
    return [...rows()];
  } catch (error) {
    expect((error as Error).constructor).toBe(Error);
    expect((error as Error).message).toMatch(new RegExp(`^${source}:\\d+: `));
    return (error as Error).message;
  }
}

/** Characters a line-based reader trips on. */
const hostile = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({
    unit: fc.constantFrom('"', ',', '\n', '\r', '\r\n', '{', '}', '[', ']', ':', '\\', ' ', 'a', '\u2028', '\ufeff'),
    maxLength: 60,
  }),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => `x${String.fromCharCode(c)}y`),
);

describe('parseJsonl (fast-check)', () => {
  it('any text: objects or an Error naming the line', () => {
    const lines = fc.array(
      fc.oneof(
        fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
        hostile,
      ),
      {
        maxLength: 8,
      },
    );
    fc.assert(
      fc.property(lines, fc.constantFrom('\n', '\r\n'), (parts, newline) => {
        count.cases++;
        const text = parts.join(newline);
        const rows = read(() => parseJsonl(text, 'data.jsonl'), 'data\\.jsonl');
        if (typeof rows === 'string') return;
        for (const row of rows) {
          expect(typeof row === 'object' && row !== null && !Array.isArray(row)).toBe(true);
          // what is read is no larger than what came in
          expect(JSON.stringify(row).length).toBeLessThanOrEqual(6 * text.length + 2);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('objects written one a line come back equal, the line of a bad one is named', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
          { maxLength: 6 },
        ),
        fc.nat(),
        (objects, bad) => {
          count.cases++;
          const lines = objects.map((o) => JSON.stringify(o));
          expect(read(() => parseJsonl(lines.join('\n'), 'data.jsonl'), 'data\\.jsonl')).toEqual(
            objects.map((o) => JSON.parse(JSON.stringify(o))),
          );
          if (lines.length === 0) return;
          const at = bad % lines.length;
          lines[at] = lines[at]!.slice(0, -1);
          const message = read(() => parseJsonl(lines.join('\n'), 'data.jsonl'), 'data\\.jsonl');
          // a cut object is either invalid JSON on its line, or ("{}" -> "{") always invalid
          expect(message).toMatch(new RegExp(`^data\\.jsonl:${at + 1}: (not valid JSON|expected a JSON object)`));
        },
      ),
      { numRuns: 1500 },
    );
  });
});

/** A field as RFC 4180 writes it: quoted when it holds a quote, a comma or a line break. */
function csvField(value: string): string {
  return /[",\r\n]/.test(value) || value === '' ? `"${value.replaceAll('"', '""')}"` : value;
}

describe('parseCsv (fast-check)', () => {
  it('any text: rows of the header width or an Error naming the line', () => {
    fc.assert(
      fc.property(hostile, fc.array(hostile, { maxLength: 4 }), (head, rest) => {
        count.cases++;
        const text = [head, ...rest].join('\n');
        const rows = read(() => parseCsv(text, 'data.csv'), 'data\\.csv');
        if (typeof rows === 'string') return;
        let size = 0;
        for (const row of rows) for (const value of Object.values(row)) size += value.length;
        expect(size).toBeLessThanOrEqual(text.length);
      }),
      { numRuns: 3000 },
    );
  });

  it('rows written by RFC 4180 come back as written', () => {
    const cell = fc.string({
      unit: fc.constantFrom('a', 'b', ' ', '"', ',', '\n', '\r\n', 'é', '\u0000'),
      maxLength: 6,
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 5 }), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.array(fc.array(cell, { minLength: 4, maxLength: 4 }), { maxLength: 5 }),
        fc.constantFrom('\n', '\r\n'),
        (columns, cells, newline) => {
          count.cases++;
          // a row of one empty field is a blank line, which the reader skips
          const rows = cells
            .map((values) => Object.fromEntries(columns.map((column, i) => [column, values[i]!])))
            .filter((row) => columns.length > 1 || Object.values(row)[0] !== '');
          const text = [columns, ...rows.map((row) => columns.map((c) => row[c]!))]
            .map((fields) => fields.map(csvField).join(','))
            .join(newline);
          expect(read(() => parseCsv(text, 'data.csv'), 'data\\.csv')).toEqual(rows);
        },
      ),
      { numRuns: 1500 },
    );
  });
});
