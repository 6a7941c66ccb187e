// Pretrains brown-gpt, the bench's embedded base model: a GPT-2-architecture LM (4 layers, 256
// wide, 4 heads, context 128, byte-level BPE of 4,096 tokens) trained from scratch with @peft/core's
// engine on the Brown corpus minus its held-out files. Seeded and resumable: re-running continues
// from the last checkpoint in the work folder.
//
//   pnpm --filter @peft/bench pretrain [--epochs 3] [--work .cache/brown-gpt-run] [--out models/brown-gpt]
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { selectBackend } from '@peft/backend';
import {
  SeededRandom,
  evaluate,
  fullFineTuning,
  serializeSafetensors,
  train,
  type Checkpoint,
  type Example,
  type TensorToWrite,
} from '@peft/core';
import { nodeDirectory } from '@peft/core/node';
import { ConfigReader, Gpt2Model, loadTokenizer, parseGpt2Config, type HfTokenizer } from '@peft/models';

import { detokenize, readBrown, splitBrown, type BrownFile } from '../src/data/brown.js';
import { appendCurve, brownBpe, curveStepper, generatedCheckpoint } from '../src/pretraining.js';
import { tokenizerJson } from '../src/tokenizer/train-bpe.js';

const EOS = '<|endoftext|>';
const SHAPE = { vocab: 4096, positions: 128, hidden: 256, layers: 4, heads: 4 };

/** The HF GPT-2 config.json of brown-gpt (transformers loads it as GPT2LMHeadModel). */
export function brownGptConfig(eosId: number): Record<string, unknown> {
  return {
    activation_function: 'gelu_new',
    architectures: ['GPT2LMHeadModel'],
    attn_pdrop: 0.0,
    bos_token_id: eosId,
    embd_pdrop: 0.0,
    eos_token_id: eosId,
    initializer_range: 0.02,
    layer_norm_epsilon: 1e-5,
    model_type: 'gpt2',
    n_embd: SHAPE.hidden,
    n_head: SHAPE.heads,
    n_inner: null,
    n_layer: SHAPE.layers,
    n_positions: SHAPE.positions,
    resid_pdrop: 0.0,
    scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true,
    tie_word_embeddings: true,
    torch_dtype: 'float32',
    vocab_size: SHAPE.vocab,
  };
}

/** GPT-2's initialisation: N(0, 0.02), residual projections N(0, 0.02/√(2·layers)), norms 1, biases 0. */
function initialCheckpoint(seed: number): Checkpoint {
  const { vocab, positions, hidden: d, layers } = SHAPE;
  const shapes = new Map<string, number[]>([
    ['transformer.wte.weight', [vocab, d]],
    ['transformer.wpe.weight', [positions, d]],
    ['transformer.ln_f.weight', [d]],
    ['transformer.ln_f.bias', [d]],
  ]);
  for (let i = 0; i < layers; i++) {
    const p = `transformer.h.${i}`;
    for (const [name, shape] of [
      ['ln_1.weight', [d]],
      ['ln_1.bias', [d]],
      ['attn.c_attn.weight', [d, 3 * d]],
      ['attn.c_attn.bias', [3 * d]],
      ['attn.c_proj.weight', [d, d]],
      ['attn.c_proj.bias', [d]],
      ['ln_2.weight', [d]],
      ['ln_2.bias', [d]],
      ['mlp.c_fc.weight', [d, 4 * d]],
      ['mlp.c_fc.bias', [4 * d]],
      ['mlp.c_proj.weight', [4 * d, d]],
      ['mlp.c_proj.bias', [d]],
    ] as const)
      shapes.set(`${p}.${name}`, [...shape]);
  }
  return generatedCheckpoint('brown-gpt initialisation', shapes, seed, (name) =>
    /ln_\w+\.weight$/.test(name)
      ? 'ones'
      : name.endsWith('.weight')
        ? { std: name.endsWith('c_proj.weight') ? 0.02 / Math.sqrt(2 * layers) : 0.02 }
        : 'zeros',
  );
}

/** Files to one token stream (EOS between files), cut into blocks of `length` tokens. */
function blocks(tokenizer: HfTokenizer, files: readonly BrownFile[], length: number): Example[] {
  const eos = tokenizer.eosTokenId!;
  const stream: number[] = [];
  for (const file of files) {
    const text = file.sentences.map((s) => detokenize(s.map((w) => w.word))).join(' ');
    stream.push(...tokenizer.encode(text, { addSpecialTokens: false }).ids, eos);
  }
  const out: Example[] = [];
  for (let start = 0; start + length <= stream.length; start += length) {
    const ids = stream.slice(start, start + length);
    out.push({ inputIds: ids, labels: ids });
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      epochs: { type: 'string', default: '3' },
      batch: { type: 'string', default: '16' },
      lr: { type: 'string', default: '1e-3' },
      seed: { type: 'string', default: '1' },
      work: { type: 'string', default: path.join(import.meta.dirname, '..', '.cache', 'brown-gpt-run') },
      out: { type: 'string', default: path.join(import.meta.dirname, '..', 'models', 'brown-gpt') },
      'max-steps': { type: 'string' },
    },
  });
  const seed = Number(values.seed);
  const backend = await selectBackend();
  console.log(`backend: ${backend.name} (${backend.detail})`);
  mkdirSync(values.work!, { recursive: true });
  mkdirSync(values.out!, { recursive: true });

  const split = splitBrown(readBrown());
  const { vocab, merges } = brownBpe(split.pretrain, SHAPE.vocab, [EOS]);
  const out = nodeDirectory(values.out!);
  await out.write('tokenizer.json', new TextEncoder().encode(JSON.stringify(tokenizerJson(vocab, merges, [EOS]))));
  const tokenizerConfig = {
    bos_token: EOS,
    eos_token: EOS,
    pad_token: EOS,
    unk_token: EOS,
    model_max_length: SHAPE.positions,
    tokenizer_class: 'GPT2Tokenizer',
    clean_up_tokenization_spaces: false,
    add_prefix_space: false,
  };
  await out.write('tokenizer_config.json', new TextEncoder().encode(`${JSON.stringify(tokenizerConfig, null, 2)}\n`));
  const tokenizer = await loadTokenizer(values.out!);
  const train_ = blocks(tokenizer, split.pretrain, SHAPE.positions);
  const heldOut = blocks(tokenizer, split.heldOut, SHAPE.positions);
  console.log(
    `data: ${train_.length} training blocks (${(train_.length * SHAPE.positions).toLocaleString('en-US')} tokens, ${split.pretrain.length} files), ` +
      `${heldOut.length} held-out blocks (${split.heldOut.length} files)`,
  );

  const config = brownGptConfig(tokenizer.eosTokenId!);
  const host = new Gpt2Model(parseGpt2Config(new ConfigReader(config, 'brown-gpt config')), initialCheckpoint(seed));
  const curveFile = path.join(values.work!, 'curve.jsonl');
  const heldOutSample = new SeededRandom(seed).shuffle([...heldOut]).slice(0, 64);
  const options = {
    data: train_,
    validation: heldOutSample,
    task: 'causal-lm' as const,
    padTokenId: tokenizer.padTokenId!,
    batchSize: Number(values.batch),
    epochs: Number(values.epochs),
    ...(values['max-steps'] ? { maxSteps: Number(values['max-steps']) } : {}),
    learningRate: Number(values.lr),
    weightDecay: 0.1,
    schedule: 'cosine' as const,
    warmupSteps: 100,
    evalEvery: 200,
    seed,
    bucketByLength: false,
    checkpoint: { store: nodeDirectory(values.work!), every: 100 },
    resume: true,
    onStep: curveStepper(curveFile),
    onEval: ({ step, loss, perplexity }: { step: number; loss: number; perplexity?: number }) => {
      appendCurve(curveFile, { step, heldOutLoss: loss, heldOutPerplexity: perplexity });
      console.log(`step ${step}: held-out loss ${loss.toFixed(4)}, perplexity ${perplexity!.toFixed(1)}`);
    },
  };
  const result = await train(fullFineTuning(host), options);
  console.log(`trained ${result.steps} steps (${result.stoppedBy}), ${result.tokensPerSecond.toFixed(0)} tok/s`);
  if (result.stoppedBy === 'interrupted') return;

  const final = await evaluate(fullFineTuning(host), heldOut, { ...options, batchSize: 32 });
  console.log(`held-out perplexity (all ${heldOut.length} blocks): ${final.perplexity!.toFixed(2)}`);
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, variable] of host.parameters) {
    tensors[name] = { shape: variable.shape, values: (await variable.data()) as Float32Array, dtype: 'F16' };
  }
  await out.write('model.safetensors', serializeSafetensors(tensors, { format: 'pt' }));
  await out.write('config.json', new TextEncoder().encode(`${JSON.stringify(config, null, 2)}\n`));
  writeFileSync(
    path.join(values.work!, 'result.json'),
    JSON.stringify(
      {
        ...result,
        losses: undefined,
        heldOutPerplexity: final.perplexity,
        heldOutLoss: final.loss,
        heldOutBlocks: heldOut.length,
        trainBlocks: train_.length,
        backend: backend.name,
      },
      null,
      2,
    ),
  );
  console.log(`saved to ${values.out}`);
}

await main();
