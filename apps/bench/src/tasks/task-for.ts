// The task a bench run trains on: an embedded one by name, or a user's JSONL, tokenised for the model.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { loadTokenizer } from '@peft/models';

import { readBrown, splitBrown } from '../data/brown.js';
import { readEmails } from '../data/email.js';
import { METHODS } from '../methods.js';
import { emailLmTask, genreTask, jsonlTask, posTask, spamTask, type TaskSplits } from './tasks.js';

/** The task `name` (or the JSONL file `data`), with the tokenizer and positions of the model folder. */
export async function taskFor(
  name: string,
  data: string | undefined,
  tokenizerDirectory: string,
  limit: number,
): Promise<TaskSplits> {
  const tokenizer = await loadTokenizer(tokenizerDirectory);
  const config = JSON.parse(readFileSync(path.join(tokenizerDirectory, 'config.json'), 'utf8')) as {
    n_positions?: number;
    max_position_embeddings?: number;
  };
  const positions = Math.min(config.n_positions ?? config.max_position_embeddings ?? 512, 512);
  // every method sees the same examples: room is left for the most virtual tokens a method adds
  const virtualTokens = Math.max(...METHODS.map((method) => method.virtualTokens));
  const options = { tokenizer, maxLength: positions - virtualTokens, limit };
  if (data) return jsonlTask(path.basename(data), readFileSync(data, 'utf8'), options);
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
