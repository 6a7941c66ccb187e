// Chat transcripts as causal LM examples with the loss on the assistant turns only (TRL's
// assistant_only_loss): the checkpoint's chat template renders the conversation, and the assistant
// turns' character spans become label spans.
import { IGNORE_INDEX, type Example } from '@peft/core';

import type { ChatMessage, ChatTemplateOptions } from './chat-template.js';
import type { HfTokenizer } from './tokenizer.js';

export interface ChatExampleOptions extends Pick<ChatTemplateOptions, 'tools' | 'chatTemplate'> {
  /** Keep at most this many tokens (the end of the conversation is cut). */
  maxLength?: number;
}

/**
 * A causal LM example from a conversation: ids of the rendered chat (no special tokens added beyond
 * the template's, as transformers' `apply_chat_template(tokenize=True)`), labels on the assistant
 * turns and IGNORE_INDEX elsewhere. With `{% generation %}` markers the labels are transformers'
 * `assistant_masks`; without, each assistant turn is found by rendering the conversation turn by turn,
 * and a template that rewrites earlier turns is an error rather than a loss on everything.
 *
 * @example
 * const tokenizer = await loadTokenizer('./Qwen2.5-0.5B-Instruct');
 * const example = chatExample(tokenizer, [
 *   { role: 'user', content: 'Hi!' },
 *   { role: 'assistant', content: 'Hello.' },
 * ]);
 */
export function chatExample(
  tokenizer: HfTokenizer,
  messages: readonly ChatMessage[],
  options: ChatExampleOptions = {},
): Example {
  const template = tokenizer.chatTemplateFor(options);
  const { text, assistantSpans } = template.assistantSpans(messages, options);
  const encode = (part: string): number[] => tokenizer.encode(part, { addSpecialTokens: false }).ids;
  let inputIds = encode(text);
  const tokenAt = (char: number): number => {
    const ids = encode(text.slice(0, char));
    if (ids.length > inputIds.length || ids.some((id, i) => id !== inputIds[i]))
      throw new Error(
        `${tokenizer.source}: an assistant turn starts or ends at character ${char} of the rendered chat, ` +
          `inside a token (${JSON.stringify(text.slice(Math.max(0, char - 12), char + 12))}); its labels ` +
          'would be ambiguous',
      );
    return ids.length;
  };
  let labels = inputIds.map(() => IGNORE_INDEX);
  for (const [start, end] of assistantSpans) {
    if (end <= start) continue;
    const first = tokenAt(start);
    const last = tokenAt(end);
    for (let i = first; i < last; i++) labels[i] = inputIds[i]!;
  }
  if (options.maxLength !== undefined && inputIds.length > options.maxLength) {
    inputIds = inputIds.slice(0, options.maxLength);
    labels = labels.slice(0, options.maxLength);
  }
  return { inputIds, labels };
}
