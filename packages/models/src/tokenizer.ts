// A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) on @huggingface/tokenizers,
// with what that library leaves out and transformers users expect: padding, truncation,
// batches, pairs under a ByteLevel post-processor, special-token ids, decode of [] and chat templates.
import { Tokenizer } from '@huggingface/tokenizers';
import { describeFile, preview, readJson, readText, resolveStore, type FileStore, type StoreSource } from '@peft/core';

import { ChatTemplate, type ChatMessage, type ChatTemplateOptions } from './chat-template.js';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
/** Where transformers 4.43+ saves the chat template (before, tokenizer_config.json's `chat_template`). */
export const CHAT_TEMPLATE_FILE = 'chat_template.jinja';

/** The special tokens transformers passes to chat templates by name. */
const TEMPLATE_TOKENS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

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
  /** Masked LMs' [MASK] / <mask>, and the [CLS] / [SEP] that frame a sequence (tokenizer_config.json's mask_token, cls_token, sep_token). */
  readonly maskTokenId: number | null;
  readonly clsTokenId: number | null;
  readonly sepTokenId: number | null;
  readonly paddingSide: Side;
  readonly truncationSide: Side;
  private readonly specialIds: Set<number>;
  /** The JS library drops `text_pair` when the post-processor is ByteLevel only (GPT-2). */
  private readonly concatenatesPairs: boolean;
  private readonly cleanUpSpaces: boolean;
  /** The chat templates by name (`default`, `tool_use`, ...); a single template is `default`. */
  private readonly chatTemplates: Map<string, string>;
  private readonly templateTokens: Record<string, string>;
  private readonly compiledTemplates = new Map<string, ChatTemplate>();

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
    this.maskTokenId = id('mask_token');
    this.clsTokenId = id('cls_token');
    this.sepTokenId = id('sep_token');
    this.paddingSide = config.padding_side === 'left' ? 'left' : 'right';
    this.truncationSide = config.truncation_side === 'left' ? 'left' : 'right';
    this.specialIds = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
    const processor = json.post_processor?.type;
    this.concatenatesPairs = processor === undefined || processor === 'ByteLevel';
    // transformers 5 cleans up decoded spaces only where asked, and only for WordPiece
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true && json.model?.type === 'WordPiece';
    this.chatTemplates = parseChatTemplates(config.chat_template, source);
    this.templateTokens = {};
    for (const field of TEMPLATE_TOKENS) {
      const content = tokenContent(config[field] as TokenSpec);
      if (content !== null) this.templateTokens[field] = content;
    }
  }

  /** The checkpoint's chat template (`default` where it has several), or null where it has none. */
  get chatTemplate(): string | null {
    return this.chatTemplates.get('default') ?? null;
  }

  /**
   * The template that renders a conversation: `options.chatTemplate` if given, else the checkpoint's
   * (`tool_use` when tools are given and the checkpoint names one, as transformers picks).
   */
  chatTemplateFor(options: Pick<ChatTemplateOptions, 'tools' | 'chatTemplate'> = {}): ChatTemplate {
    const named = options.tools !== undefined ? this.chatTemplates.get('tool_use') : undefined;
    const source = options.chatTemplate ?? named ?? this.chatTemplate;
    if (source === null)
      throw new Error(
        `${this.source}: the tokenizer has no chat template (${CHAT_TEMPLATE_FILE} or ${TOKENIZER_CONFIG_FILE}'s ` +
          'chat_template); pass one as chatTemplate',
      );
    let template = this.compiledTemplates.get(source);
    if (template === undefined) {
      const origin = options.chatTemplate === undefined ? `${this.source}: chat_template` : 'chatTemplate';
      template = new ChatTemplate(source, this.templateTokens, origin);
      this.compiledTemplates.set(source, template);
    }
    return template;
  }

  /** The conversation as text, as transformers' `apply_chat_template(messages, tokenize=False)`. */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    return this.chatTemplateFor(options).apply(messages, options);
  }

  /** Reads tokenizer.json and (if present) tokenizer_config.json from a model directory. */
  static async load(store: FileStore): Promise<HfTokenizer> {
    const json = await readJson<TokenizerJson & object>(store, TOKENIZER_FILE);
    const config = (await store.has(TOKENIZER_CONFIG_FILE))
      ? await readJson<Record<string, unknown>>(store, TOKENIZER_CONFIG_FILE)
      : {};
    if (await store.has(CHAT_TEMPLATE_FILE)) config.chat_template = await readText(store, CHAT_TEMPLATE_FILE);
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
    if (options.textPair !== undefined && typeof options.textPair !== 'string')
      throw new Error(`${this.source}: textPair: expected a string, got ${typeof options.textPair}`);
    checkSide('truncationSide', options.truncationSide);
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
    const notText = texts.findIndex((text) => typeof text !== 'string');
    if (notText >= 0)
      throw new Error(
        `${this.source}: encodeBatch: texts[${notText}] is a ${typeof texts[notText]}, expected a string`,
      );
    const padding = options.padding ?? 'longest';
    if (padding !== 'longest' && padding !== 'max_length' && padding !== false)
      throw new Error(`padding: expected "longest", "max_length" or false, got ${JSON.stringify(padding)}`);
    checkSide('paddingSide', options.paddingSide);
    if (
      padding === 'max_length' &&
      !(Number.isSafeInteger(options.maxLength) && options.maxLength! > 0 && options.maxLength! <= MAX_PADDED_LENGTH)
    ) {
      throw new Error(
        `padding "max_length" needs maxLength, a positive integer up to ${MAX_PADDED_LENGTH}, got ${options.maxLength}`,
      );
    }
    const rows = texts.map((text) => this.encode(text, options));
    if (padding === false) {
      return {
        inputIds: rows.map((r) => r.ids),
        attentionMask: rows.map((r) => r.attentionMask),
        tokenTypeIds: rows.map((r) => r.tokenTypeIds),
      };
    }
    const width = padding === 'max_length' ? options.maxLength! : Math.max(...rows.map((r) => r.ids.length));
    const over = rows.findIndex((row) => row.ids.length > width);
    if (over >= 0) {
      // transformers leaves such a row longer than the others; a batch of ragged rows fails later, far from here
      throw new Error(
        `padding "max_length": text ${over} has ${rows[over]!.ids.length} tokens, more than maxLength ${width}; pass truncation: true to cut it`,
      );
    }
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

  /**
   * The text of `ids`. An id the vocabulary lacks (a model's embedding table is often padded past
   * the tokenizer's) decodes to nothing, as in transformers; one that cannot be an id at all (not
   * an integer in 0..2^32-1, as Rust's u32) is an error naming its place.
   */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    if (!Array.isArray(ids)) throw new Error(`${this.source}: decode expects an array of token ids`);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || (id as number) < 0 || (id as number) > 0xffffffff)
        throw new Error(
          `${this.source}: decode: ids[${i}] is ${typeof id === 'number' ? id : JSON.stringify(id)}, not a token id (an integer in 0..2^32-1)`,
        );
    }
    let kept = Array.from(ids);
    if (options.skipSpecialTokens) kept = kept.filter((id) => !this.specialIds.has(id));
    if (kept.length === 0) return '';
    return this.tokenizer.decode(kept, {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: this.cleanUpSpaces,
    });
  }
}

/**
 * The longest row `padding: "max_length"` makes: past the longest context of any model (10M tokens),
 * and short of an array that would exhaust the heap and end the process rather than throw.
 */
const MAX_PADDED_LENGTH = 2 ** 24;

function checkSide(field: string, side: unknown): void {
  if (side !== undefined && side !== 'left' && side !== 'right')
    throw new Error(`${field}: expected "left" or "right", got ${JSON.stringify(side)}`);
}

function parseChatTemplates(value: unknown, source: string): Map<string, string> {
  if (value === undefined || value === null) return new Map();
  if (typeof value === 'string') return new Map([['default', value]]);
  const named = Array.isArray(value) ? value : [];
  const entries = named.map((entry: { name?: unknown; template?: unknown }) => [entry?.name, entry?.template]);
  if (
    entries.length === 0 ||
    entries.some(([name, template]) => typeof name !== 'string' || typeof template !== 'string')
  )
    throw new Error(
      `${source}: chat_template: expected a string or a list of {"name", "template"}, got ${preview(value)}`,
    );
  return new Map(entries as [string, string][]);
}

/** Loads the tokenizer of a model directory (path, URL or FileStore). */
export async function loadTokenizer(source: StoreSource): Promise<HfTokenizer> {
  return HfTokenizer.load(await resolveStore(source));
}
