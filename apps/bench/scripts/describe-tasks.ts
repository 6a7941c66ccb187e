// Prints every embedded task's split sizes, label distribution and baseline scores, with the
// brown-gpt tokenizer (the bench computes the same). Takes a minute on the full data.
//
//   pnpm --filter @peft/bench describe-tasks [--limit N]
import path from 'node:path';
import { parseArgs } from 'node:util';

import { selectBackend } from '@peft/backend';
import { loadTokenizer } from '@peft/models';

import { readBrown, splitBrown } from '../src/data/brown.js';
import { VIRTUAL_TOKENS } from '../src/methods.js';
import { readEmails } from '../src/data/email.js';
import { bagOfWordsBaseline, majorityBaseline } from '../src/tasks/baselines.js';
import { describeTask, emailLmTask, genreTask, posTask, spamTask } from '../src/tasks/tasks.js';

const { values } = parseArgs({
  options: {
    limit: { type: 'string' },
    model: { type: 'string', default: path.join(import.meta.dirname, '..', 'models', 'brown-gpt') },
  },
});
await selectBackend();
const tokenizer = await loadTokenizer(values.model!);
// as the bench: the context (128) minus the prompt methods' virtual tokens
const options = {
  tokenizer,
  maxLength: 128 - VIRTUAL_TOKENS,
  ...(values.limit ? { limit: Number(values.limit) } : {}),
};
const emails = readEmails();
const { heldOut } = splitBrown(readBrown());
for (const task of [
  spamTask(emails, options),
  posTask(heldOut, options),
  genreTask(heldOut, options),
  emailLmTask(emails, options),
]) {
  console.log(JSON.stringify(describeTask(task)));
  if (task.task === 'causal-lm') continue;
  console.log(`  ${JSON.stringify(majorityBaseline(task))}`);
  if (task.task === 'sequence-classification') console.log(`  ${JSON.stringify(bagOfWordsBaseline(task))}`);
}
