// A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) on @huggingface/tokenizers,
// with what that library leaves out and transformers users expect: padding, truncation,
// batches, pairs under a ByteLevel post-processor, special-token ids, and decode of [].
import { Tokenizer } from '@huggingface/tokenizers';
import { describeFile, readJson, resolveStore, type FileStore, type StoreSource } from '@peft/core';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

type Side = 'left' | 'right';

export interface EncodeOptions {
  /** Second segment (BERT pairs); token type 1. */
  textPair?: string;
  /** Add the post-processor's special tokens (BOS, [CLS]/[SEP]); default true. */
  addSpecialTokens?: boolean;
  /** With `truncation`, keep at most this many ids, special tokens included. */
  maxLength?: number;
  truncation?: boolean;
  /** Which end truncation cuts; default the tokenizer config's `truncation_side`, else right. */
  truncationSide?: Side;
}

export interface Encoded {
  ids: number[];
  tokenTypeIds: number[];
  attentionMask: number[];
}

export interface BatchEncodeOptions extends EncodeOptions {
  /** `longest`: to the longest row; `max_length`: to maxLength; false: no padding (rows may differ). */
  padding?: 'longest' | 'max_length' | false;
  /** Default the tokenizer config's `padding_side`, else right. */
  paddingSide?: Side;
}

export interface BatchEncoding {
  inputIds: number[][];
  attentionMask: number[][];
  tokenTypeIds: number[][];
}

type TokenSpec = string | { content: string } | null | undefined;

function tokenContent(spec: TokenSpec): string | null {
  if (typeof spec === 'string') return spec;
  if (spec && typeof spec === 'object' && typeof spec.content === 'string') return spec.content;
  return null;
}

interface TokenizerJson {
  model?: { type?: string };
  post_processor?: { type?: string } | null;
  added_tokens?: { id: number; special?: boolean }[];
}

export class HfTokenizer {
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  readonly paddingSide: Side;
  readonly truncationSide: Side;
  private readonly specialIds: Set<number>;
  /** The JS library drops `text_pair` when the post-processor is ByteLevel only (GPT-2). */
  private readonly concatenatesPairs: boolean;
  private readonly cleanUpSpaces: boolean;

  constructor(
    private readonly tokenizer: Tokenizer,
    json: TokenizerJson,
    config: Record<string, unknown>,
    /** For messages: where the tokenizer came from. */
    readonly source = 'tokenizer',
  ) {
    const id = (field: string): number | null => {
      const content = tokenContent(config[field] as TokenSpec);
      return content === null ? null : (tokenizer.token_to_id(content) ?? null);
    };
    this.bosTokenId = id('bos_token');
    this.eosTokenId = id('eos_token');
    this.padTokenId = id('pad_token');
    this.unkTokenId = id('unk_token');
    this.paddingSide = config.padding_side === 'left' ? 'left' : 'right';
    this.truncationSide = config.truncation_side === 'left' ? 'left' : 'right';
    this.specialIds = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
    const processor = json.post_processor?.type;
    this.concatenatesPairs = processor === undefined || processor === 'ByteLevel';
    // transformers 5 cleans up decoded spaces only where asked, and only for WordPiece
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true && json.model?.type === 'WordPiece';
  }

  /** Reads tokenizer.json and (if present) tokenizer_config.json from a model directory. */
  static async load(store: FileStore): Promise<HfTokenizer> {
    const json = await readJson<TokenizerJson & object>(store, TOKENIZER_FILE);
    const config = (await store.has(TOKENIZER_CONFIG_FILE))
      ? await readJson<Record<string, unknown>>(store, TOKENIZER_CONFIG_FILE)
      : {};
    const source = describeFile(store, TOKENIZER_FILE);
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(json, config);
    } catch (error) {
      throw new Error(`${source}: cannot build the tokenizer (${(error as Error).message})`);
    }
    return new HfTokenizer(tokenizer, json, config, source);
  }

  get vocabSize(): number {
    return this.tokenizer.get_vocab(true).size;
  }

  tokenToId(token: string): number | null {
    return this.tokenizer.token_to_id(token) ?? null;
  }

  idToToken(id: number): string | null {
    return this.tokenizer.id_to_token(id) ?? null;
  }

  encode(text: string, options: EncodeOptions = {}): Encoded {
    if (typeof text !== 'string') throw new Error(`${this.source}: encode expects a string, got ${typeof text}`);
    const addSpecialTokens = options.addSpecialTokens ?? true;
    let ids: number[];
    let tokenTypeIds: number[];
    if (options.textPair !== undefined && options.textPair !== '') {
      if (options.truncation)
        throw new Error(`${this.source}: truncation of text pairs is not supported; truncate the texts first`);
      if (this.concatenatesPairs) {
        const first = this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
        const second = this.tokenizer.encode(options.textPair, { add_special_tokens: addSpecialTokens }).ids;
        ids = [...first, ...second];
        tokenTypeIds = [...first.map(() => 0), ...second.map(() => 1)];
      } else {
        const encoded = this.tokenizer.encode(text, {
          text_pair: options.textPair,
          add_special_tokens: addSpecialTokens,
          return_token_type_ids: true,
        });
        ids = encoded.ids;
        tokenTypeIds = encoded.token_type_ids ?? ids.map(() => 0);
      }
    } else {
      ids = this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
      if (options.truncation && options.maxLength !== undefined)
        ids = this.truncate(text, ids, addSpecialTokens, options);
      tokenTypeIds = ids.map(() => 0);
    }
    return { ids, tokenTypeIds, attentionMask: ids.map(() => 1) };
  }

  /**
   * Cuts the content (not the special tokens) so that the whole fits `maxLength`, as transformers
   * does: the special tokens around the content are found by encoding it without them.
   */
  private truncate(text: string, ids: number[], addSpecialTokens: boolean, options: EncodeOptions): number[] {
    const maxLength = options.maxLength!;
    if (!Number.isInteger(maxLength) || maxLength < 1)
      throw new Error(`maxLength: expected a positive integer, got ${maxLength}`);
    if (ids.length <= maxLength) return ids;
    const content = addSpecialTokens ? this.tokenizer.encode(text, { add_special_tokens: false }).ids : ids;
    const start = addSpecialTokens ? ids.findIndex((_, i) => content.every((c, j) => ids[i + j] === c)) : 0;
    const before = ids.slice(0, start);
    const after = ids.slice(start + content.length);
    const room = maxLength - before.length - after.length;
    if (room < 0)
      throw new Error(`maxLength ${maxLength} cannot hold the ${before.length + after.length} special tokens`);
    const side = options.truncationSide ?? this.truncationSide;
    const kept = side === 'right' ? content.slice(0, room) : content.slice(content.length - room);
    return [...before, ...kept, ...after];
  }

  /** Encodes rows and pads them to one length (with the pad token, mask 0). */
  encodeBatch(texts: readonly string[], options: BatchEncodeOptions = {}): BatchEncoding {
    if (!Array.isArray(texts) || texts.length === 0)
      throw new Error(`${this.source}: encodeBatch expects a non-empty array of strings`);
    const rows = texts.map((text) => this.encode(text, options));
    const padding = options.padding ?? 'longest';
    if (padding === false) {
      return {
        inputIds: rows.map((r) => r.ids),
        attentionMask: rows.map((r) => r.attentionMask),
        tokenTypeIds: rows.map((r) => r.tokenTypeIds),
      };
    }
    if (padding === 'max_length' && options.maxLength === undefined)
      throw new Error('padding "max_length" needs maxLength');
    const width = padding === 'max_length' ? options.maxLength! : Math.max(...rows.map((r) => r.ids.length));
    if (this.padTokenId === null) {
      throw new Error(`${this.source}: the tokenizer has no pad_token (tokenizer_config.json); set one to pad batches`);
    }
    const padId = this.padTokenId;
    const side = options.paddingSide ?? this.paddingSide;
    const pad = (row: number[], value: number): number[] => {
      const fill = new Array<number>(Math.max(0, width - row.length)).fill(value);
      return side === 'right' ? [...row, ...fill] : [...fill, ...row];
    };
    return {
      inputIds: rows.map((r) => pad(r.ids, padId)),
      attentionMask: rows.map((r) => pad(r.attentionMask, 0)),
      tokenTypeIds: rows.map((r) => pad(r.tokenTypeIds, 0)),
    };
  }

  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    let kept = Array.from(ids);
    if (options.skipSpecialTokens) kept = kept.filter((id) => !this.specialIds.has(id));
    if (kept.length === 0) return '';
    return this.tokenizer.decode(kept, {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: this.cleanUpSpaces,
    });
  }
}

/** Loads the tokenizer of a model directory (path, URL or FileStore). */
export async function loadTokenizer(source: StoreSource): Promise<HfTokenizer> {
  return HfTokenizer.load(await resolveStore(source));
}
