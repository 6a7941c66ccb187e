// A byte-level BPE tokenizer trained on a corpus, written as a Hugging Face tokenizer.json (the
// GPT-2 layout: ByteLevel pre-tokenizer with GPT-2's split regex, BPE model, ByteLevel decoder), so
// @huggingface/tokenizers and Python `tokenizers` / transformers load it as they load GPT-2's.

/** GPT-2's bytes_to_unicode: every byte as a printable character, so merges are plain strings. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = '!'.charCodeAt(0); b <= '~'.charCodeAt(0); b++) printable.push(b);
  for (let b = '¡'.charCodeAt(0); b <= '¬'.charCodeAt(0); b++) printable.push(b);
  for (let b = '®'.charCodeAt(0); b <= 'ÿ'.charCodeAt(0); b++) printable.push(b);
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = printable.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++);
  }
  return table;
}

/** GPT-2's pre-tokenization pattern (the one tokenizers' ByteLevel uses with use_regex). */
const SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export interface BpeTrainingOptions {
  /** Final vocabulary size: 256 bytes + merges + special tokens. */
  vocabSize: number;
  specialTokens: readonly string[];
  /** Pairs seen fewer times are not merged (default 2). */
  minFrequency?: number;
  onProgress?: (merges: number, total: number) => void;
}

/**
 * Trains the merges: repeatedly the most frequent adjacent pair (ties: the smaller pair string, so
 * training is deterministic) becomes a token, counts kept up to date incrementally.
 */
export function trainByteLevelBpe(
  texts: Iterable<string>,
  options: BpeTrainingOptions,
): { vocab: Map<string, number>; merges: [string, string][] } {
  const byteChar = bytesToUnicode();
  const encoder = new TextEncoder();
  const counts = new Map<string, number>();
  for (const text of texts) {
    for (const piece of text.match(SPLIT) ?? []) {
      const mapped = Array.from(encoder.encode(piece), (b) => byteChar[b]!).join('\u0000');
      counts.set(mapped, (counts.get(mapped) ?? 0) + 1);
    }
  }
  const words = [...counts.entries()].map(([w, c]) => ({ symbols: w.split('\u0000'), count: c }));
  const pairKey = (a: string, b: string): string => `${a}\u0000${b}`;
  const pairCounts = new Map<string, number>();
  const pairWords = new Map<string, Set<number>>();
  const addPairs = (index: number, sign: 1 | -1): void => {
    const { symbols, count } = words[index]!;
    for (let i = 0; i < symbols.length - 1; i++) {
      const key = pairKey(symbols[i]!, symbols[i + 1]!);
      const updated = (pairCounts.get(key) ?? 0) + sign * count;
      if (updated > 0) pairCounts.set(key, updated);
      else pairCounts.delete(key);
      if (sign === 1) {
        let set = pairWords.get(key);
        if (!set) {
          set = new Set();
          pairWords.set(key, set);
        }
        set.add(index);
      }
    }
  };
  for (const i of words.keys()) addPairs(i, 1);

  const vocab = new Map<string, number>();
  for (const token of options.specialTokens) vocab.set(token, vocab.size);
  for (const char of [...byteChar].sort()) vocab.set(char, vocab.size);
  const merges: [string, string][] = [];
  const target = options.vocabSize - vocab.size;
  const minFrequency = options.minFrequency ?? 2;
  while (merges.length < target) {
    let best: string | null = null;
    let bestCount = 0;
    for (const [key, count] of pairCounts) {
      if (count > bestCount || (count === bestCount && best !== null && key < best)) {
        best = key;
        bestCount = count;
      }
    }
    if (best === null || bestCount < minFrequency) break;
    const [a, b] = best.split('\u0000') as [string, string];
    const merged = a + b;
    merges.push([a, b]);
    vocab.set(merged, vocab.size);
    for (const index of pairWords.get(best) ?? []) {
      const word = words[index]!;
      addPairs(index, -1);
      const next: string[] = [];
      for (let i = 0; i < word.symbols.length; i++) {
        if (i < word.symbols.length - 1 && word.symbols[i] === a && word.symbols[i + 1] === b) {
          next.push(merged);
          i++;
        } else next.push(word.symbols[i]!);
      }
      word.symbols = next;
      addPairs(index, 1);
    }
    pairCounts.delete(best);
    pairWords.delete(best);
    if (merges.length % 250 === 0) options.onProgress?.(merges.length, target);
  }
  return { vocab, merges };
}

/** tokenizer.json in Hugging Face's format for a GPT-2-style byte-level BPE. */
export function tokenizerJson(
  vocab: Map<string, number>,
  merges: [string, string][],
  specialTokens: readonly string[],
): Record<string, unknown> {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specialTokens.map((content) => ({
      id: vocab.get(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges: merges.map(([a, b]) => [a, b]),
    },
  };
}
