// Pretrains brown-bert, the bench's embedded masked LM (issue 26): a BERT (BertForMaskedLM: by default 4
// layers, 128 wide, 4 heads (`--layers --width --heads`; the feed-forward 4 x the width), 128 positions,
// byte-level BPE of 4,096 tokens with BERT's [CLS]/[SEP]/[MASK])
// trained from scratch with @peft/core's engine on the Brown corpus minus its held-out files (the
// same split as brown-gpt), with BERT's masked-LM objective: 15% of the tokens of each block chosen,
// of those 80% replaced by [MASK], 10% by a random token, 10% kept; the loss on the chosen ones.
// Each epoch masks the blocks anew (RoBERTa's dynamic masking: `--epochs` masked copies, shuffled
// together). `--phases` trains in stages of other block lengths and batches (short blocks first, the
// last over all 128 positions), each stage from the one before, with its own schedule and folder.
// Seeded and resumable: re-running continues from the last checkpoint in the work folder. The curve's
// held-out check scores the [MASK] inputs alone, beside the unigram guess's loss on the same masks
// (printed at the start). The output bias starts at the training split's log token frequencies (the
// unigram stage's bias, not learned step by step; `--no-prior-bias`: at zero, as BERT). A width of 256
// wants a rate below 1e-3 (`scripts/mlm-synthetic.ts`: about 1e-3 x 64 / width). The defaults make the
// shipped models/brown-bert.
//
//   pnpm --filter @peft/bench pretrain-bert [--epochs 12] [--batch 16] [--work .cache/brown-bert-run] [--out models/brown-bert]
//     [--phases BLOCKxBATCHxMASKINGS,...] [--lr 5e-4] [--warmup 200] [--no-prior-bias] [--layers 4] [--width 128] [--heads 4]
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { selectBackend } from '@peft/backend';
import { SeededRandom, countParameters, evaluate, fullFineTuning, train, type Example } from '@peft/core';
import { nodeDirectory } from '@peft/core/node';
import {
  BertModel,
  ConfigReader,
  loadTokenizer,
  parseBertConfig,
  savePretrained,
  type HfTokenizer,
} from '@peft/models';

import { detokenize, readBrown, splitBrown, type BrownFile } from '../src/data/brown.js';
import { labelsAtMasks, maskBlock, type SpecialIds } from '../src/data/mlm-masking.js';
import {
  appendCurve,
  brownBpe,
  curveStepper,
  bertMaskedLmConfig,
  bertMaskedLmStart,
  parsePhases,
  BROWN_BERT,
  bertShape,
  type Phase,
  unigramLogPrior,
  withOutputBias,
} from '../src/pretraining.js';
import { tokenizerJson } from '../src/tokenizer/train-bpe.js';

const SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] as const;

/**
 * Each file's sentences packed into blocks of at most `length` - 2 tokens (a sentence longer than
 * that is cut), each block as [CLS] tokens [SEP].
 */
function blocks(tokenizer: HfTokenizer, files: readonly BrownFile[], length: number, ids: SpecialIds): number[][] {
  const out: number[][] = [];
  for (const file of files) {
    let block: number[] = [];
    for (const sentence of file.sentences) {
      const tokens = tokenizer
        .encode(detokenize(sentence.map((w) => w.word)), { addSpecialTokens: false })
        .ids.slice(0, length - 2);
      if (block.length + tokens.length > length - 2) {
        out.push([ids.cls, ...block, ids.sep]);
        block = [];
      }
      block.push(...tokens);
    }
    if (block.length > 0) out.push([ids.cls, ...block, ids.sep]);
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      epochs: { type: 'string' },
      batch: { type: 'string' },
      phases: { type: 'string' },
      lr: { type: 'string', default: '5e-4' },
      seed: { type: 'string', default: '1' },
      work: { type: 'string', default: path.join(import.meta.dirname, '..', '.cache', 'brown-bert-run') },
      out: { type: 'string', default: path.join(import.meta.dirname, '..', 'models', 'brown-bert') },
      'max-steps': { type: 'string' },
      warmup: { type: 'string', default: '200' },
      'prior-bias': { type: 'boolean', default: true },
      layers: { type: 'string', default: '4' },
      width: { type: 'string', default: '128' },
      heads: { type: 'string', default: '4' },
    },
    allowNegative: true,
  });
  const SHAPE = bertShape(BROWN_BERT, Number(values.layers), Number(values.width), Number(values.heads));
  const seed = Number(values.seed);
  if (values.phases && (values.epochs || values.batch))
    throw new Error('--phases gives each phase its maskings and batch: leave --epochs and --batch out');
  const phases = parsePhases(
    values.phases ?? `${SHAPE.positions}x${values.batch ?? 16}x${values.epochs ?? 12}`,
    SHAPE.positions,
  );
  const backend = await selectBackend();
  console.log(`backend: ${backend.name} (${backend.detail})`);
  mkdirSync(values.work!, { recursive: true });
  // a work folder resumes one shape only (a folder from before this file held the default shape)
  const shapeFile = path.join(values.work!, 'shape.json');
  if (existsSync(shapeFile)) {
    const before = readFileSync(shapeFile, 'utf8').trim();
    if (before !== JSON.stringify(SHAPE))
      throw new Error(
        `${values.work} holds a run of shape ${before}, not ${JSON.stringify(SHAPE)}: pick another --work`,
      );
  } else writeFileSync(shapeFile, JSON.stringify(SHAPE));
  mkdirSync(values.out!, { recursive: true });

  const split = splitBrown(readBrown());
  const { vocab, merges } = brownBpe(split.pretrain, SHAPE.vocab, SPECIAL);
  const id = (token: string): number => vocab.get(token)!;
  const ids: SpecialIds = {
    pad: id('[PAD]'),
    unk: id('[UNK]'),
    cls: id('[CLS]'),
    sep: id('[SEP]'),
    mask: id('[MASK]'),
  };
  if (Object.values(ids).some((value) => value >= SPECIAL.length))
    throw new Error('the special tokens must take the first ids (maskBlock draws random tokens after them)');
  const json = tokenizerJson(vocab, merges, [...SPECIAL]);
  // BERT's template: [CLS] A [SEP], pairs [CLS] A [SEP] B [SEP] with B's token type 1
  json.post_processor = {
    type: 'TemplateProcessing',
    single: [
      { SpecialToken: { id: '[CLS]', type_id: 0 } },
      { Sequence: { id: 'A', type_id: 0 } },
      { SpecialToken: { id: '[SEP]', type_id: 0 } },
    ],
    pair: [
      { SpecialToken: { id: '[CLS]', type_id: 0 } },
      { Sequence: { id: 'A', type_id: 0 } },
      { SpecialToken: { id: '[SEP]', type_id: 0 } },
      { Sequence: { id: 'B', type_id: 1 } },
      { SpecialToken: { id: '[SEP]', type_id: 1 } },
    ],
    special_tokens: Object.fromEntries(
      (['[CLS]', '[SEP]'] as const).map((token) => [token, { id: token, ids: [id(token)], tokens: [token] }]),
    ),
  };
  const out = nodeDirectory(values.out!);
  await out.write('tokenizer.json', new TextEncoder().encode(JSON.stringify(json)));
  const tokenizerConfig = {
    cls_token: '[CLS]',
    sep_token: '[SEP]',
    pad_token: '[PAD]',
    mask_token: '[MASK]',
    unk_token: '[UNK]',
    model_max_length: SHAPE.positions,
    tokenizer_class: 'PreTrainedTokenizerFast',
    clean_up_tokenization_spaces: false,
  };
  await out.write('tokenizer_config.json', new TextEncoder().encode(`${JSON.stringify(tokenizerConfig, null, 2)}\n`));
  const tokenizer = await loadTokenizer(values.out!);
  const config = bertMaskedLmConfig(SHAPE, ids.pad);
  // the training split's blocks of each length, tokenized once (the prior and the last phase share 128)
  const trainBlocksOf = new Map<number, number[][]>();
  const trainingBlocks = (length: number): number[][] => {
    if (!trainBlocksOf.has(length)) trainBlocksOf.set(length, blocks(tokenizer, split.pretrain, length, ids));
    return trainBlocksOf.get(length)!;
  };
  // the training split's token frequencies: the unigram stage's level on the curve, and with
  // --prior-bias the output bias's start
  const prior = unigramLogPrior(trainingBlocks(SHAPE.positions), SHAPE.vocab, [ids.cls, ids.sep]);
  const start = bertMaskedLmStart('brown-bert initialisation', SHAPE, seed);
  const host = new BertModel(
    parseBertConfig(new ConfigReader(config, 'brown-bert config')),
    values['prior-bias'] ? withOutputBias(start, prior) : start,
  );
  const curveFile = path.join(values.work!, 'curve.jsonl');
  const masking = { ...ids, firstWord: SPECIAL.length, vocab: SHAPE.vocab };
  const heldOutRandom = new SeededRandom(seed * 1000 + 99);
  let stepsBefore = 0;
  let seconds = 0;
  let tokensTrained = 0;
  const done: (Phase & { steps: number; trainBlocks: number })[] = [];
  let last: { heldOut: Example[]; options: Parameters<typeof train>[1] } | null = null;
  for (const [k, phase] of phases.entries()) {
    // one phase: the work folder itself (as runs before phases); several: a folder each
    const work = phases.length === 1 ? values.work! : path.join(values.work!, `phase-${k + 1}-${phase.block}`);
    mkdirSync(work, { recursive: true });
    const trainBlocks = trainingBlocks(phase.block);
    const heldOutBlocks = blocks(tokenizer, split.heldOut, phase.block, ids);
    // every masking of the corpus drawn anew, all shuffled together by train (one pass over the copies)
    const random = new SeededRandom(seed * 1000 + 7 + k);
    const data: Example[] = [];
    for (let m = 0; m < phase.maskings; m++)
      for (const block of trainBlocks) data.push(maskBlock(block, random, masking));
    const heldOut = heldOutBlocks.map((block) => maskBlock(block, heldOutRandom, masking));
    const tokens = trainBlocks.reduce((sum, block) => sum + block.length, 0);
    console.log(
      `phase ${k + 1}/${phases.length}: ${trainBlocks.length} training blocks of at most ${phase.block} tokens (${tokens.toLocaleString('en-US')} tokens, ${split.pretrain.length} files) x ${phase.maskings} maskings, batch ${phase.batch}; ` +
        `${heldOut.length} held-out blocks (${split.heldOut.length} files)`,
    );
    // the curve's held-out check: 64 x 128 positions' worth of blocks, scored at the [MASK] inputs only
    // (over all chosen tokens, the 10% kept as themselves are copied: the unigram stage reads ~12%)
    const heldOutSample = labelsAtMasks(
      new SeededRandom(seed).shuffle([...heldOut]).slice(0, Math.round((64 * SHAPE.positions) / phase.block)),
      ids.mask,
    );
    const masked = heldOutSample.flatMap((example) => (example.labels as number[]).filter((label) => label >= 0));
    const likeliest = prior.indexOf(Math.max(...prior));
    console.log(
      `the held-out check's ${masked.length} masks under the training split's token frequencies (the unigram stage): loss ${(-masked.reduce((sum, label) => sum + prior[label]!, 0) / masked.length).toFixed(4)}, accuracy ${(masked.filter((label) => label === likeliest).length / masked.length).toFixed(4)}`,
    );
    const offset = stepsBefore;
    const stepper = curveStepper(curveFile);
    // the phase's training time over all its processes (a resumed run's result counts its own only),
    // written with every checkpoint: a process killed loses at most the steps it will train again
    const timingFile = path.join(work, 'timing.json');
    const before = existsSync(timingFile)
      ? (JSON.parse(readFileSync(timingFile, 'utf8')) as { seconds: number; tokens: number })
      : { seconds: 0, tokens: 0 };
    let timing = before;
    const options = {
      data,
      validation: heldOutSample,
      task: 'token-classification' as const,
      padTokenId: ids.pad,
      batchSize: phase.batch,
      epochs: 1,
      ...(values['max-steps'] ? { maxSteps: Number(values['max-steps']) } : {}),
      learningRate: Number(values.lr),
      weightDecay: 0.01,
      schedule: 'cosine' as const,
      warmupSteps: Number(values.warmup),
      evalEvery: 250,
      seed,
      checkpoint: { store: nodeDirectory(work), every: 100, keepLast: 2 },
      resume: true,
      // the curve counts the steps of all phases
      onStep: (step: Parameters<typeof stepper>[0]) => {
        stepper({ ...step, step: offset + step.step });
        // a step's own seconds and tokens (StepInfo), summed
        timing = { seconds: timing.seconds + step.seconds, tokens: timing.tokens + step.tokens };
        if (step.step % 100 === 0) writeFileSync(timingFile, JSON.stringify(timing));
      },
      onEval: ({ step, loss, accuracy }: { step: number; loss: number; accuracy?: number }) => {
        appendCurve(curveFile, { step: offset + step, heldOutMaskLoss: loss, heldOutMaskAccuracy: accuracy });
        console.log(
          `step ${offset + step}: held-out masked-LM loss ${loss.toFixed(4)}, accuracy ${accuracy!.toFixed(4)} (at [MASK] inputs)`,
        );
      },
    };
    // a phase finished before is resumed as finished: its last checkpoint's weights, nothing trained
    const result = await train(fullFineTuning(host), options);
    console.log(
      `phase ${k + 1}: ${result.steps} steps (${result.stoppedBy}${result.alreadyFinished ? ' before' : ''}), ${(timing.tokens / timing.seconds).toFixed(0)} tok/s`,
    );
    writeFileSync(timingFile, JSON.stringify(timing));
    if (result.stoppedBy === 'interrupted') return;
    stepsBefore += result.steps;
    seconds += timing.seconds;
    tokensTrained += timing.tokens;
    done.push({ ...phase, steps: result.steps, trainBlocks: trainBlocks.length });
    last = { heldOut, options };
  }
  const { heldOut, options } = last!;
  const final = await evaluate(fullFineTuning(host), heldOut, { ...options, batchSize: 32 });
  console.log(
    `held-out masked-LM accuracy (all ${heldOut.length} blocks): ${final.accuracy!.toFixed(4)}, loss ${final.loss.toFixed(4)}`,
  );
  // the [MASK] inputs alone: what the context predicts (a kept token can be copied)
  const atMasks = await evaluate(fullFineTuning(host), labelsAtMasks(heldOut, ids.mask), { ...options, batchSize: 32 });
  console.log(`  at the [MASK] inputs only: accuracy ${atMasks.accuracy!.toFixed(4)}, loss ${atMasks.loss.toFixed(4)}`);
  // transformers' names and layouts (nn.Linear [out, in], the tied decoder left out), F16; the tokenizer files are there already
  await savePretrained(host, values.out!, { dtype: 'F16', config, tokenizer: false });
  writeFileSync(
    path.join(values.work!, 'result.json'),
    JSON.stringify(
      {
        steps: stepsBefore,
        seconds,
        tokensPerSecond: tokensTrained / seconds,
        heldOutAccuracy: final.accuracy,
        heldOutLoss: final.loss,
        heldOutMaskAccuracy: atMasks.accuracy,
        heldOutMaskLoss: atMasks.loss,
        heldOutBlocks: heldOut.length,
        phases: done,
        learningRate: options.learningRate,
        warmupSteps: options.warmupSteps,
        outputBiasStart: values['prior-bias'] ? 'unigram' : 'zeros',
        shape: SHAPE,
        parameters: countParameters(host.parameters.values()),
        backend: backend.name,
      },
      null,
      2,
    ),
  );
  console.log(`saved to ${values.out}`);
}

await main();
