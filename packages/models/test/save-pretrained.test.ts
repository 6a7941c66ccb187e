// savePretrained writes what transformers writes, and loadPretrained reads it back exactly.
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import {
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  getPeftModel,
  memoryStore,
  parseSafetensors,
  registerPeftMethod,
  seededNormal,
  serializeSafetensors,
  type AdapterTuner,
  type FileStore,
  type PeftConfig,
  type PeftHost,
  type PeftMethod,
  type PeftModel,
} from '@peft/core';
import { nodeDirectory } from '@peft/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';

import {
  ConfigReader,
  Gpt2Model,
  loadPretrained,
  loadTokenizer,
  parseGpt2Config,
  randomModel,
  savePretrained,
  type TransformerHost,
} from '../src/index.js';
import { FIXTURES, loadFixtures } from './fixtures.js';

const fixtures = loadFixtures();
const GPT2 = path.join(FIXTURES, 'gpt2-tied');
const BERT = path.join(FIXTURES, 'bert-sequence-classification');
const TOKENIZER = path.join(FIXTURES, 'tokenizers', 'byte-level-bpe');
const IDS = [
  [3, 9, 4, 7, 12, 5],
  [6, 2, 8, 10, 11, 3],
];

const TINY_LLAMA = {
  model_type: 'llama',
  vocab_size: 61,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  tie_word_embeddings: false,
};

const directories: string[] = [];
afterAll(() => {
  for (const directory of directories) rmSync(directory, { recursive: true, force: true });
});

function temporaryDirectory(): string {
  const directory = mkdtempSync(path.join(tmpdir(), 'peft-save-'));
  directories.push(directory);
  return directory;
}

function logits(host: PeftHost | PeftModel, tokenTypes = false): Float32Array {
  const { logits: tensor } = host.forward({
    inputIds: IDS,
    ...(tokenTypes ? { tokenTypeIds: IDS.map((row) => row.map(() => 0)) } : {}),
  });
  const values = tensor.dataSync() as Float32Array;
  tensor.dispose();
  return values;
}

/** Every parameter's float32 bits, by name. */
function parameterBits(host: PeftHost): Map<string, Uint32Array> {
  return new Map(
    [...host.parameters].map(([name, variable]) => [
      name,
      new Uint32Array(Float32Array.from(variable.dataSync()).buffer),
    ]),
  );
}

async function savedText(store: FileStore, name: string): Promise<Record<string, unknown>> {
  return JSON.parse(new TextDecoder().decode(await store.read(name))) as Record<string, unknown>;
}

/**
 * A rank-r update of the test's own on every projection whose name ends in `target` (models may not
 * depend on @peft/lora): y = x·W + scale·x·A·B, merged as LoRA merges, W += scale·A·B.
 */
class RankUpdateConfig implements PeftConfig {
  readonly peftType = 'TEST_RANK_UPDATE';
  readonly taskType = 'CAUSAL_LM';
  readonly modulesToSave = null;
  constructor(
    readonly target: string,
    readonly rank: number,
    readonly scale: number,
  ) {}
  toJson(): Record<string, unknown> {
    return { peft_type: this.peftType };
  }
}

const rankUpdateMethod: PeftMethod<RankUpdateConfig> = {
  peftType: 'TEST_RANK_UPDATE',
  fromJson: () => {
    throw new Error('not saved in these tests');
  },
  attach(host, adapterName, config): AdapterTuner {
    let active = false;
    let merged = false;
    const targets = [...host.linears.values()].filter((linear) => linear.name.endsWith(config.target));
    const factors = targets.map((linear, i) => ({
      linear,
      a: tf.variable(seededNormal([linear.inFeatures, config.rank], 0, 0.3, 11 + i)),
      b: tf.variable(seededNormal([config.rank, linear.outFeatures], 0, 0.3, 29 + i)),
    }));
    const deltaWeight = (a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D =>
      tf.tidy(() => tf.mul(tf.matMul(b, a, true, true), config.scale)); // [out, in], as the weight
    for (const { linear, a, b } of factors) {
      linear.addDelta(adapterName, (x) =>
        active && !merged ? (tf.mul(tf.matMul(tf.matMul(x, a), b), config.scale) as tf.Tensor2D) : null,
      );
    }
    const fold = (sign: 1 | -1): void => {
      for (const { linear, a, b } of factors) {
        const delta = deltaWeight(a as tf.Variable<tf.Rank.R2>, b as tf.Variable<tf.Rank.R2>);
        linear.merge(delta, sign);
        delta.dispose();
      }
    };
    return {
      setActive: (value) => (active = value),
      trainableVariables: () =>
        new Map(
          factors.flatMap(
            ({ linear, a, b }) =>
              [
                [`${linear.name}.a`, a],
                [`${linear.name}.b`, b],
              ] as const,
          ),
        ),
      stateDict: async () => ({}),
      loadStateDict: () => undefined,
      merge: () => {
        if (!merged) fold(1);
        merged = true;
      },
      unmerge: () => {
        if (merged) fold(-1);
        merged = false;
      },
      get merged() {
        return merged;
      },
      dispose: (options = {}) => {
        if (merged && !options.keepMerged) fold(-1);
        for (const { linear, a, b } of factors) {
          linear.removeDelta(adapterName);
          a.dispose();
          b.dispose();
        }
      },
    };
  },
};
registerPeftMethod(rankUpdateMethod);

describe('savePretrained writes what transformers wrote', () => {
  it.each(fixtures)('$name: model.safetensors byte for byte, config.json as loaded', async (fixture) => {
    const host = await loadPretrained(fixture.directory);
    const store = memoryStore();
    const saved = await savePretrained(host, store);
    host.dispose();

    expect(saved.shards).toEqual(['model.safetensors']);
    const ours = await store.read('model.safetensors');
    const theirs = readFileSync(path.join(fixture.directory, 'model.safetensors'));
    expect([...parseSafetensors(ours).entries.keys()].sort()).toEqual(
      [...parseSafetensors(theirs).entries.keys()].sort(),
    );
    expect(Buffer.from(ours).equals(theirs)).toBe(true);

    const config = JSON.parse(readFileSync(path.join(fixture.directory, 'config.json'), 'utf8'));
    expect(await savedText(store, 'config.json')).toEqual({ ...config, torch_dtype: 'float32' });
    expect(saved.files.at(-1)).toBe('config.json');
  });

  it('copies generation_config.json from the folder the host came from', async () => {
    const host = await loadPretrained(GPT2);
    const store = memoryStore();
    await savePretrained(host, store);
    host.dispose();
    expect(
      Buffer.from(await store.read('generation_config.json')).equals(
        readFileSync(path.join(GPT2, 'generation_config.json')),
      ),
    ).toBe(true);
  });

  it("saves a GPT-2 loaded without the transformer. prefix (as the original gpt2) under transformers' names", async () => {
    const file = parseSafetensors(readFileSync(path.join(GPT2, 'model.safetensors')));
    const unprefixed = Object.fromEntries(
      [...file.entries.keys()].map((name) => [
        name.replace(/^transformer\./, ''),
        { shape: file.entries.get(name)!.shape, values: file.tensor(name).values as Float32Array },
      ]),
    );
    const source = memoryStore({
      'config.json': readFileSync(path.join(GPT2, 'config.json')),
      'model.safetensors': serializeSafetensors(unprefixed, { format: 'pt' }),
    });
    const host = await loadPretrained(source);
    // named as GPT2LMHeadModel names its modules (adapters saved from it load in peft)
    expect(host.layerPaths[0]).toBe('transformer.h.0');
    expect([...host.linears.keys()][0]).toBe('transformer.h.0.attn.c_attn');
    const store = memoryStore();
    await savePretrained(host, store);
    host.dispose();
    expect(
      Buffer.from(await store.read('model.safetensors')).equals(readFileSync(path.join(GPT2, 'model.safetensors'))),
    ).toBe(true);
  });
});

describe('loadPretrained reads a saved folder back exactly (F32)', () => {
  const cases: [string, () => Promise<TransformerHost>, boolean][] = [
    ['GPT-2 (tied head)', () => loadPretrained(GPT2), false],
    ['GPT-2 (untied head)', () => loadPretrained(path.join(FIXTURES, 'gpt2-untied-odd')), false],
    ['Llama (random weights, untied head)', async () => randomModel(TINY_LLAMA), false],
    ['Llama (GQA fixture)', () => loadPretrained(path.join(FIXTURES, 'llama-gqa-untied')), false],
    ['BERT (sequence classification)', () => loadPretrained(BERT), true],
  ];

  it.each(cases)('%s: every weight bit-identical, logits equal', async (_, build, tokenTypes) => {
    const host = await build();
    const directory = temporaryDirectory();
    await savePretrained(host, directory);
    const reloaded = await loadPretrained(directory);

    expect(parameterBits(reloaded)).toEqual(parameterBits(host));
    const before = logits(host, tokenTypes);
    expect(logits(reloaded, tokenTypes)).toEqual(before);
    expect(before.some((v) => v !== 0)).toBe(true);
    host.dispose();
    reloaded.dispose();
  });
});

describe('sharding', () => {
  it('splits past maxShardSize as huggingface_hub does, with an index that loads', async () => {
    const host = randomModel(TINY_LLAMA);
    const directory = temporaryDirectory();
    // the embeddings and head are 61·32·4 = 7,808 bytes each: bigger than the limit, alone in a shard
    const saved = await savePretrained(host, directory, { maxShardSize: '6KB' });

    expect(saved.shards.length).toBeGreaterThan(2);
    for (const [i, file] of saved.shards.entries()) {
      expect(file).toBe(
        `model-${String(i + 1).padStart(5, '0')}-of-${String(saved.shards.length).padStart(5, '0')}.safetensors`,
      );
    }
    expect(readdirSync(directory).sort()).toEqual(
      [...saved.shards, 'config.json', 'model.safetensors.index.json'].sort(),
    );

    const index = JSON.parse(readFileSync(path.join(directory, 'model.safetensors.index.json'), 'utf8'));
    const parameters = [...host.parameters.values()].reduce((sum, v) => sum + v.size, 0);
    expect(index.metadata).toEqual({ total_parameters: parameters, total_size: parameters * 4 });
    expect(Object.keys(index.weight_map).sort()).toEqual([...host.parameters.keys()].sort());
    for (const file of saved.shards) {
      const shard = parseSafetensors(readFileSync(path.join(directory, file)));
      const names = [...shard.entries.keys()];
      for (const name of names) expect(index.weight_map[name]).toBe(file);
      const bytes = [...shard.entries.values()].reduce((sum, entry) => sum + entry.end - entry.begin, 0);
      if (names.length > 1) expect(bytes).toBeLessThanOrEqual(6000);
    }

    const reloaded = await loadPretrained(directory);
    expect(parameterBits(reloaded)).toEqual(parameterBits(host));
    expect(logits(reloaded)).toEqual(logits(host));
    host.dispose();
    reloaded.dispose();
  });

  it('replaces an earlier sharded save with one file, leaving no index or shard behind', async () => {
    const directory = temporaryDirectory();
    const first = randomModel(TINY_LLAMA);
    await savePretrained(first, directory, { maxShardSize: 6000 });
    first.dispose();
    const host = await loadPretrained(path.join(FIXTURES, 'llama-gqa-untied'));
    await savePretrained(host, directory);

    expect(readdirSync(directory).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    const reloaded = await loadPretrained(directory);
    expect(parameterBits(reloaded)).toEqual(parameterBits(host));
    host.dispose();
    reloaded.dispose();
  });

  it("reads sizes as transformers' max_shard_size does, and refuses others", async () => {
    const host = randomModel(TINY_LLAMA);
    for (const size of ['5 parsecs', '-1GB', 0, 1.5, '2GiB']) {
      await expect(savePretrained(host, memoryStore(), { maxShardSize: size })).rejects.toThrow(
        /maxShardSize must be a positive number of bytes/,
      );
    }
    const saved = await savePretrained(host, memoryStore(), { maxShardSize: '0.01MB' });
    expect(saved.shards.length).toBeGreaterThan(2);
    host.dispose();
  });
});

describe('F16 and BF16', () => {
  const rounding = {
    F16: (values: Float32Array) => float16ToFloat32(float32ToFloat16(values)),
    BF16: (values: Float32Array) => bfloat16ToFloat32(float32ToBfloat16(values)),
  };
  // logit tolerances: measured 6.4e-3 (F16) and 6.4e-2 (BF16) on this model, whose logits reach ~1
  it.each([
    ['F16', 'float16', 2 ** -11, 1e-2],
    ['BF16', 'bfloat16', 2 ** -8, 1e-1],
  ] as const)(
    '%s: each weight is the nearest %s value, logits within the precision',
    async (dtype, torchName, relative, logitTolerance) => {
      const host = await loadPretrained(GPT2);
      const directory = temporaryDirectory();
      await savePretrained(host, directory, { dtype });

      const file = parseSafetensors(readFileSync(path.join(directory, 'model.safetensors')));
      expect(new Set([...file.entries.values()].map((entry) => entry.dtype))).toEqual(new Set([dtype]));
      const config = JSON.parse(readFileSync(path.join(directory, 'config.json'), 'utf8'));
      expect([config.dtype, config.torch_dtype]).toEqual([torchName, torchName]);

      const reloaded = await loadPretrained(directory);
      for (const [name, variable] of host.parameters) {
        const original = Float32Array.from(variable.dataSync());
        const back = reloaded.parameters.get(name)!.dataSync() as Float32Array;
        expect(back).toEqual(rounding[dtype](original));
        for (const [i, value] of original.entries()) {
          expect(Math.abs(back[i]! - value)).toBeLessThanOrEqual(Math.abs(value) * relative + 1e-7);
        }
      }
      const expected = logits(host);
      const actual = logits(reloaded);
      const worst = actual.reduce((max, value, i) => Math.max(max, Math.abs(value - expected[i]!)), 0);
      expect(worst).toBeGreaterThan(0);
      expect(worst).toBeLessThan(logitTolerance);
      host.dispose();
      reloaded.dispose();
    },
  );

  it("takes torch's dtype names too", async () => {
    const host = await loadPretrained(GPT2);
    const store = memoryStore();
    await savePretrained(host, store, { dtype: 'bfloat16' });
    host.dispose();
    expect(parseSafetensors(await store.read('model.safetensors')).entries.get('transformer.wte.weight')!.dtype).toBe(
      'BF16',
    );
  });

  it('refuses a weight F16 cannot hold, naming the file, tensor and index, before writing anything', async () => {
    const host = await loadPretrained(GPT2);
    const bias = host.parameters.get('transformer.h.1.mlp.c_fc.bias')!;
    bias.assign(
      tf.tidy(() =>
        tf.add(bias, tf.reshape(tf.mul(tf.oneHot(tf.tensor1d([5], 'int32'), bias.shape[0]!), 70000), bias.shape)),
      ),
    );
    const store = memoryStore();
    await expect(savePretrained(host, store, { dtype: 'F16' })).rejects.toThrow(
      /memory:\/model\.safetensors: tensor "transformer\.h\.1\.mlp\.c_fc\.bias" holds 700\d\d(\.\d+)? at index 5, which F16 cannot hold \(it would become infinity\); save as BF16 or F32/,
    );
    expect(store.files.size).toBe(0);
    const saved = await savePretrained(host, memoryStore(), { dtype: 'BF16' });
    expect(saved.shards).toEqual(['model.safetensors']);
    host.dispose();
  });

  it('refuses a weight that is not finite, in any dtype', async () => {
    const host = await loadPretrained(GPT2);
    const norm = host.parameters.get('transformer.ln_f.weight')!;
    norm.assign(tf.fill(norm.shape, Number.NaN));
    await expect(savePretrained(host, memoryStore())).rejects.toThrow(
      /tensor "transformer\.ln_f\.weight" holds NaN at index 0; refusing to save a weight that is not finite/,
    );
    host.dispose();
  });
});

describe('a merged adapter leaves as a checkpoint', () => {
  it("GPT-2 with a rank-4 update merged: the reloaded folder gives the merged model's logits", async () => {
    const host = await loadPretrained(GPT2);
    const base = logits(host);
    const model = getPeftModel(host, new RankUpdateConfig('c_attn', 4, 2));
    const adapted = logits(model);
    const merged = model.mergeAndUnload();
    const mergedLogits = logits(merged);
    // the update changes the outputs, and merging keeps them (to float rounding)
    expect(Math.max(...adapted.map((v, i) => Math.abs(v - base[i]!)))).toBeGreaterThan(0.05);
    expect(Math.max(...mergedLogits.map((v, i) => Math.abs(v - adapted[i]!)))).toBeLessThan(1e-4);

    const fromModel = temporaryDirectory();
    const fromHost = temporaryDirectory();
    await savePretrained(model, fromModel);
    await savePretrained(merged, fromHost);
    expect(
      readFileSync(path.join(fromModel, 'model.safetensors')).equals(
        readFileSync(path.join(fromHost, 'model.safetensors')),
      ),
    ).toBe(true);

    const reloaded = await loadPretrained(fromModel);
    expect(parameterBits(reloaded)).toEqual(parameterBits(merged));
    expect(logits(reloaded)).toEqual(mergedLogits);
    host.dispose();
    reloaded.dispose();
  });

  it('refuses a PeftModel that still holds its adapter, pointing at mergeAndUnload', async () => {
    const host = await loadPretrained(GPT2);
    const model = getPeftModel(host, new RankUpdateConfig('c_attn', 2, 1));
    await expect(savePretrained(model, memoryStore())).rejects.toThrow(
      /PeftModel still holds adapters \(default\); call mergeAndUnload\(\)/,
    );
    model.merge();
    await expect(savePretrained(model.host, memoryStore())).rejects.toThrow(
      /adapters are attached to the host \(delta path "default" on transformer\.h\.0\.attn\.c_attn; delta path "default" on transformer\.h\.1\.attn\.c_attn\)/,
    );
    model.unmerge();
    model.dispose();
    host.dispose();
  });
});

describe('tokenizer files', () => {
  function modelWithTokenizer(): string {
    const directory = temporaryDirectory();
    cpSync(GPT2, directory, { recursive: true });
    for (const name of ['tokenizer.json', 'tokenizer_config.json'])
      cpSync(path.join(TOKENIZER, name), path.join(directory, name));
    return directory;
  }

  it('copies the tokenizer files of the folder the host was loaded from, and the copy encodes alike', async () => {
    const source = modelWithTokenizer();
    const host = await loadPretrained(source);
    const directory = temporaryDirectory();
    const saved = await savePretrained(host, directory);
    host.dispose();

    expect(saved.files).toEqual([
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
      'generation_config.json',
      'config.json',
    ]);
    for (const name of ['tokenizer.json', 'tokenizer_config.json']) {
      expect(readFileSync(path.join(directory, name)).equals(readFileSync(path.join(source, name)))).toBe(true);
    }
    const text = 'Hello world, saved and loaded.';
    expect((await loadTokenizer(directory)).encode(text)).toEqual((await loadTokenizer(source)).encode(text));
  });

  it('saves over the folder the host was loaded from, keeping its tokenizer files', async () => {
    const directory = modelWithTokenizer();
    const tokenizer = readFileSync(path.join(directory, 'tokenizer.json'));
    const host = await loadPretrained(directory);
    await savePretrained(host, directory, { dtype: 'F16', maxShardSize: 20_000 });

    expect(readdirSync(directory).sort()).toEqual([
      'config.json',
      'expected.safetensors',
      'generation_config.json',
      'gradients.safetensors',
      'inputs.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    expect(readFileSync(path.join(directory, 'tokenizer.json')).equals(tokenizer)).toBe(true);
    const reloaded = await loadPretrained(directory);
    const wte = host.parameters.get('transformer.wte.weight')!.dataSync() as Float32Array;
    expect(reloaded.parameters.get('transformer.wte.weight')!.dataSync()).toEqual(
      float16ToFloat32(float32ToFloat16(wte)),
    );
    host.dispose();
    reloaded.dispose();
  });

  it('writes none with tokenizer: false, and takes them from another folder when named', async () => {
    const host = await loadPretrained(modelWithTokenizer());
    const none = memoryStore();
    await savePretrained(host, none, { tokenizer: false });
    expect([...none.files.keys()].sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);

    const fromRandom = randomModel(TINY_LLAMA);
    const named = memoryStore();
    await savePretrained(fromRandom, named, { tokenizer: TOKENIZER });
    expect([...named.files.keys()].sort()).toEqual([
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    await expect(savePretrained(fromRandom, memoryStore(), { tokenizer: BERT })).rejects.toThrow(
      /bert-sequence-classification holds no tokenizer file/,
    );
    host.dispose();
    fromRandom.dispose();
  });
});

describe('crash safety', () => {
  /** A store whose writes fail from the `failAt`-th on (a full disk). */
  function failingStore(
    inner: FileStore & { files: Map<string, Uint8Array> },
    failAt: number,
  ): FileStore & { files: Map<string, Uint8Array> } {
    let writes = 0;
    return {
      ...inner,
      async write(name, bytes) {
        writes += 1;
        if (writes >= failAt) throw new Error('ENOSPC: no space left on device');
        await inner.write(name, bytes);
      },
    };
  }

  it('a save that fails midway leaves no config.json: the folder is no model to any loader', async () => {
    const host = randomModel(TINY_LLAMA);
    const store = failingStore(memoryStore(), 2);
    await expect(savePretrained(host, store, { maxShardSize: 6000 })).rejects.toThrow(
      /memory:\/model-00002-of-000\d\d\.safetensors: could not be written \(ENOSPC: no space left on device\)/,
    );
    expect([...store.files.keys()]).toEqual([expect.stringMatching(/^model-00001-of-000\d\d\.safetensors$/)]);
    await expect(loadPretrained(store)).rejects.toThrow(/memory:\/config\.json: no such file/);
    host.dispose();
  });

  it('saving over an earlier save takes its config.json away first, so a failure leaves no mix that looks complete', async () => {
    const host = await loadPretrained(GPT2);
    const inner = memoryStore();
    await savePretrained(host, inner, { maxShardSize: 20_000 });
    expect(inner.files.has('config.json')).toBe(true);
    const store = failingStore(inner, 1);
    await expect(savePretrained(host, store, { dtype: 'F16' })).rejects.toThrow(
      /memory:\/model\.safetensors: could not be written/,
    );
    expect([...inner.files.keys()].filter((name) => name.endsWith('.json'))).toEqual(['generation_config.json']);
    host.dispose();
  });

  it('refuses to save over an earlier save in a store that cannot delete, before writing anything', async () => {
    const host = await loadPretrained(GPT2);
    const inner = memoryStore();
    await savePretrained(host, inner);
    const before = new Map(inner.files);
    const { remove: _remove, ...withoutRemove } = inner;
    await expect(savePretrained(host, withoutRemove, { dtype: 'F16' })).rejects.toThrow(
      /memory: holds an earlier save \(config\.json\) and this store cannot delete files; save into an empty folder/,
    );
    expect(inner.files).toEqual(before);
    host.dispose();
  });

  it('leaves no temporary file behind in a directory', async () => {
    const host = await loadPretrained(GPT2);
    const directory = temporaryDirectory();
    await savePretrained(host, nodeDirectory(directory), { maxShardSize: 20_000 });
    expect(readdirSync(directory).filter((name) => name.includes('.tmp-'))).toEqual([]);
    host.dispose();
  });
});

describe('savePretrained refuses', () => {
  it('a host built by hand without options.config, and takes one with it', async () => {
    const config = JSON.parse(readFileSync(path.join(GPT2, 'config.json'), 'utf8'));
    const source = await loadPretrained(GPT2);
    const checkpoint = {
      location: 'by hand',
      names: () => [...source.parameters.keys()],
      has: (name: string) => source.parameters.has(name),
      tensor: (name: string) => {
        // in the checkpoint's layout: GPT-2's Conv1D weights [in, out], held [out, in]
        const held = source.parameters.get(name)!;
        const stored = source.linears.has(name.replace(/\.weight$/, '')) ? tf.transpose(held) : held;
        const values = stored.dataSync() as Float32Array;
        if (stored !== held) stored.dispose();
        return { dtype: 'float32' as const, shape: stored.shape, values };
      },
    };
    const host = new Gpt2Model(parseGpt2Config(new ConfigReader(config, 'by hand')), checkpoint);
    await expect(savePretrained(host, memoryStore())).rejects.toThrow(
      /this gpt2 host was built by hand and has no config\.json to write; pass options\.config/,
    );
    await expect(savePretrained(host, memoryStore(), { config: { ...config, model_type: 'llama' } })).rejects.toThrow(
      /options\.config has model_type "llama", the host is "gpt2"/,
    );
    const store = memoryStore();
    await savePretrained(host, store, { config });
    expect(
      Buffer.from(await store.read('model.safetensors')).equals(readFileSync(path.join(GPT2, 'model.safetensors'))),
    ).toBe(true);
    host.dispose();
    source.dispose();
  });

  it('an unknown dtype', async () => {
    const host = randomModel(TINY_LLAMA);
    await expect(savePretrained(host, memoryStore(), { dtype: 'F8' as never })).rejects.toThrow(
      /dtype "F8" is not one of F32, F16, BF16, float32, float16, bfloat16/,
    );
    host.dispose();
  });
});
