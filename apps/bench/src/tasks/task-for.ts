// The task a bench run trains on: an embedded one by name, or a user's JSONL, tokenised for the model.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { loadTokenizer } from '@peft/models';

import { readBrown, splitBrown } from '../data/brown.js';
import { readEmails } from '../data/email.js';
import { METHODS } from '../methods.js';
import { emailLmTask, genreTask, jsonlTask, posTask, spamTask, type TaskOptions, type TaskSplits } from './tasks.js';

/**
 * The task `name` (or the JSONL file `data`), with the tokenizer and positions of the model folder;
 * each example cut at `maxLength` tokens (default: the positions less the most virtual tokens a
 * method adds), which the task's notes and `maxLength` say.
 */
export async function taskFor(
  name: string,
  data: string | undefined,
  tokenizerDirectory: string,
  limit: number,
  maxLength?: number,
): Promise<TaskSplits & { maxLength: number }> {
  const tokenizer = await loadTokenizer(tokenizerDirectory);
  const config = JSON.parse(readFileSync(path.join(tokenizerDirectory, 'config.json'), 'utf8')) as {
    n_positions?: number;
    max_position_embeddings?: number;
  };
  const positions = Math.min(config.n_positions ?? config.max_position_embeddings ?? 512, 512);
  // every method sees the same examples: room is left for the most virtual tokens a method adds
  const virtualTokens = Math.max(...METHODS.map((method) => method.virtualTokens));
  const room = positions - virtualTokens;
  if (maxLength !== undefined && maxLength > room)
    throw new Error(
      `--max-length ${maxLength}: the model has ${positions} positions, of which the prompt methods take up to ${virtualTokens}; at most ${room}`,
    );
  const options = { tokenizer, maxLength: maxLength ?? room, limit };
  const task = data ? jsonlTask(path.basename(data), readFileSync(data, 'utf8'), options) : embeddedTask(name, options);
  return { ...task, maxLength: options.maxLength, notes: `${task.notes}; examples cut at ${options.maxLength} tokens` };
}

function embeddedTask(name: string, options: TaskOptions): TaskSplits {
  switch (name) {
    case 'spam':
      return spamTask(readEmails(), options);
    case 'email-lm':
      return emailLmTask(readEmails(), options);
    case 'pos':
      return posTask(splitBrown(readBrown()).heldOut, options);
    case 'genre':
      return genreTask(splitBrown(readBrown()).heldOut, options);
    default:
      throw new Error(`--task: unknown task "${name}" (spam, pos, genre, email-lm)`);
  }
}
