// Writes brown-gpt's token ids and logits for a few sentences, for oracle/check_brown_gpt.py to
// compare with what Python transformers computes from the same files.
//
//   pnpm --filter @peft/bench check-with-python [MODEL_DIR] OUT.json
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { selectBackend } from '@peft/backend';
import { loadPretrained, loadTokenizer } from '@peft/models';

const SENTENCES = [
  'The Fulton County Grand Jury said Friday an investigation of recent elections produced no evidence.',
  'She looked at the sea for a long time, and then she went home.',
  "It isn't clear whether the committee's report, due in 1962, will be published.",
];

async function main(): Promise<void> {
  const [directory, out] =
    process.argv.length > 3
      ? [process.argv[2]!, process.argv[3]!]
      : [path.join(import.meta.dirname, '..', 'models', 'brown-gpt'), process.argv[2]];
  if (!out) throw new Error('usage: check-with-python [MODEL_DIR] OUT.json');
  await selectBackend({ backend: 'cpu', warnIfSlow: false });
  const tokenizer = await loadTokenizer(directory);
  const model = await loadPretrained(directory);
  const cases = SENTENCES.map((text) => {
    const ids = tokenizer.encode(text).ids;
    const { logits } = model.forward({ inputIds: [ids] });
    const values = Array.from(logits.dataSync());
    logits.dispose();
    return { text, ids, logits: values };
  });
  writeFileSync(out, JSON.stringify({ directory: path.resolve(directory), cases }));
  console.log(`wrote ${cases.length} cases to ${out}`);
}

await main();
