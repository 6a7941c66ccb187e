// Chat templates (tokenizer_config.json's `chat_template` or chat_template.jinja) rendered with
// @huggingface/jinja as transformers renders them, and the assistant turns' character spans: from
// `{% generation %}` markers where the template has them, else by rendering the conversation turn by turn.
import { Template } from '@huggingface/jinja';
import { preview } from '@peft/core';

/** One chat message; keys other than role and content (tool_calls, ...) reach the template as they are. */
export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** End with the header that asks the model for an assistant turn; default false. */
  addGenerationPrompt?: boolean;
  /** JSON schemas of the tools, for templates that list them. */
  tools?: readonly Record<string, unknown>[];
  /** Use this template instead of the tokenizer's. */
  chatTemplate?: string;
}

/** A rendered conversation and the [start, end) character spans of its assistant turns. */
export interface RenderedChat {
  text: string;
  assistantSpans: [number, number][];
}

// Private-use characters that stand for `{% generation %}` and `{% endgeneration %}` in the output.
const GENERATION_START = '\uE000';
const GENERATION_END = '\uE001';
const GENERATION_TAG = /\{%(-?)\s*(end)?generation\s*(-?)%\}/g;

export function hasGenerationMarkers(template: string): boolean {
  return /\{%-?\s*generation\s*-?%\}/.test(template);
}

/**
 * @huggingface/jinja drops generation tags; we turn them into expressions that print a marker. A
 * block tag is subject to lstrip_blocks and trim_blocks and an expression is not, so those are applied
 * to the generation tags here, before they become expressions.
 */
function markGenerationBlocks(template: string): string {
  return template
    .replace(/^[ \t]*(\{%-?\s*(?:end)?generation\s*-?%\})/gm, '$1')
    .replace(/(\{%-?\s*(?:end)?generation\s*-?%\})\n/g, '$1')
    .replace(GENERATION_TAG, (_, left: string, end: string | undefined, right: string) => {
      const marker = end ? GENERATION_END : GENERATION_START;
      return `{{${left} '${marker}' ${right}}}`;
    });
}

// @huggingface/jinja 0.5.13's str.strip/lstrip/rstrip ignore their argument and strip whitespace, so
// Qwen3's `content.lstrip('\n')` eats the space that starts an answer. Calls with an argument are
// rewritten to call these functions, which strip the given characters as Python does.
const STRIP_FUNCTIONS: Record<string, (value: string, chars: string | null) => string> = {
  strip: (value, chars) => stripEnd(stripStart(value, chars), chars),
  lstrip: stripStart,
  rstrip: stripEnd,
};
const STRIP_PREFIX = '__peft_str_';

function stripStart(value: string, chars: string | null): string {
  if (chars === null) return value.trimStart();
  let start = 0;
  while (start < value.length && chars.includes(value[start]!)) start++;
  return value.slice(start);
}

function stripEnd(value: string, chars: string | null): string {
  if (chars === null) return value.trimEnd();
  let end = value.length;
  while (end > 0 && chars.includes(value[end - 1]!)) end--;
  return value.slice(0, end);
}

interface AstNode {
  type?: string;
  [key: string]: unknown;
}

/** Rewrites `x.lstrip(chars)` (and strip, rstrip) in the parsed template to `__peft_str_lstrip(x, chars)`. */
function rewriteStripCalls(node: unknown, seen = new Set<unknown>()): void {
  if (node === null || typeof node !== 'object' || seen.has(node)) return;
  seen.add(node);
  const call = node as AstNode;
  const callee = call.callee as AstNode | undefined;
  const property = callee?.property as AstNode | undefined;
  const name = property?.value;
  if (
    call.type === 'CallExpression' &&
    callee?.type === 'MemberExpression' &&
    callee.computed === false &&
    property?.type === 'Identifier' &&
    typeof name === 'string' &&
    name in STRIP_FUNCTIONS &&
    Array.isArray(call.args) &&
    call.args.length === 1
  ) {
    property.value = STRIP_PREFIX + name;
    call.args = [callee.object, ...call.args];
    call.callee = property;
  }
  for (const child of Object.values(node)) rewriteStripCalls(child, seen);
}

/** A compiled chat template and the special tokens it may refer to (bos_token, eos_token, ...). */
export class ChatTemplate {
  readonly hasGenerationMarkers: boolean;
  private readonly template: Template;

  constructor(
    readonly source: string,
    private readonly specialTokens: Record<string, string>,
    /** For messages: where the template came from. */
    private readonly origin = 'chat template',
  ) {
    this.hasGenerationMarkers = hasGenerationMarkers(source);
    try {
      this.template = new Template(markGenerationBlocks(source));
      rewriteStripCalls(this.template.parsed);
    } catch (error) {
      throw new Error(`${origin}: cannot parse the Jinja template (${(error as Error).message})`);
    }
  }

  /** The text transformers' `apply_chat_template(messages, tokenize=False)` gives. */
  apply(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    return this.render(messages, options).text;
  }

  /** The text and the spans that `{% generation %}` blocks printed (none without markers). */
  render(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): RenderedChat {
    checkMessages(messages, this.origin);
    let output: string;
    try {
      output = this.template.render({
        ...this.specialTokens,
        ...Object.fromEntries(Object.entries(STRIP_FUNCTIONS).map(([name, strip]) => [STRIP_PREFIX + name, strip])),
        messages: messages as unknown as Record<string, unknown>[],
        tools: options.tools ?? null,
        documents: null,
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    } catch (error) {
      throw new Error(`${this.origin}: rendering failed (${(error as Error).message})`);
    }
    return extractMarkers(output, this.origin);
  }

  /**
   * The [start, end) character spans of the assistant turns: the generation blocks where the template
   * has them; otherwise each assistant turn is what rendering the conversation up to it adds to the
   * conversation before it (with the generation prompt), less trailing whitespace, and the whole
   * conversation must start with each such rendering.
   */
  assistantSpans(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): RenderedChat {
    const whole = this.render(messages, { ...options, addGenerationPrompt: false });
    if (this.hasGenerationMarkers) return whole;
    const spans: [number, number][] = [];
    messages.forEach((message, turn) => {
      if (message.role !== 'assistant') return;
      const before = this.apply(messages.slice(0, turn), { ...options, addGenerationPrompt: true });
      const through = this.apply(messages.slice(0, turn + 1), { ...options, addGenerationPrompt: false });
      if (!through.startsWith(before) || !whole.text.startsWith(through)) {
        throw new Error(
          `${this.origin}: cannot find assistant turn ${turn} (message ${turn} of ${messages.length}): the ` +
            `conversation rendered up to it is not the start of the conversation rendered ${
              through.startsWith(before) ? 'whole' : 'through it'
            }, so the template rewrites earlier turns (as Qwen3's drops the reasoning of older assistant turns). ` +
            'Supply a template with {% generation %} ... {% endgeneration %} around the assistant content ' +
            '(option chatTemplate), or make one example per assistant turn ending at that turn.',
        );
      }
      const end = before.length + through.slice(before.length).trimEnd().length;
      if (end > before.length) spans.push([before.length, end]);
    });
    return { text: whole.text, assistantSpans: spans };
  }
}

/**
 * The `messages` of a JSONL chat row (`{"messages": [{"role", "content"}, ...]}`), checked: a
 * non-empty array of objects with string role and content. Errors start with `where` (file and line).
 *
 * @example parseChatMessages(JSON.parse(line).messages, `train.jsonl:${lineNumber}`)
 */
export function parseChatMessages(value: unknown, where: string): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0)
    throw new Error(`${where}: expected "messages" to be a non-empty array of {"role", "content"}`);
  return value.map((message: unknown, i) => {
    const m = message as Record<string, unknown> | null;
    if (typeof m !== 'object' || m === null || typeof m.role !== 'string' || typeof m.content !== 'string')
      throw new Error(`${where}: messages[${i}]: expected {"role": string, "content": string}`);
    return m as ChatMessage;
  });
}

function checkMessages(messages: readonly ChatMessage[], origin: string): void {
  if (!Array.isArray(messages) || messages.length === 0)
    throw new Error(`${origin}: expected a non-empty array of messages, got ${preview(messages)}`);
  messages.forEach((message, index) => {
    if (typeof message?.role !== 'string' || typeof message.content !== 'string')
      throw new Error(
        `${origin}: message ${index}: expected {"role": string, "content": string}, got ${preview(message)}`,
      );
    if (message.content.includes(GENERATION_START) || message.content.includes(GENERATION_END))
      throw new Error(`${origin}: message ${index} contains U+E000 or U+E001, which mark generation blocks`);
  });
}

function extractMarkers(output: string, origin: string): RenderedChat {
  const spans: [number, number][] = [];
  let text = '';
  let open: number | null = null;
  for (const char of output) {
    if (char === GENERATION_START) {
      if (open !== null) throw new Error(`${origin}: a {% generation %} block inside another`);
      open = text.length;
    } else if (char === GENERATION_END) {
      if (open === null) throw new Error(`${origin}: {% endgeneration %} without {% generation %}`);
      spans.push([open, text.length]);
      open = null;
    } else {
      text += char;
    }
  }
  return { text, assistantSpans: spans };
}
