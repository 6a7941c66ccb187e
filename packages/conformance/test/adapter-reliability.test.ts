// Adapter files as an attacker or a broken disk hands them over (issue 23): names that reach another
// adapter's files, configs that ask for more than their weights file holds, alpha patterns and
// weights that are not finite numbers. Each is refused with an error naming the file and the field
// or tensor, before any tensor is made where the config and the file disagree, and a failed load
// leaves no tensor and no memory behind.
import v8 from 'node:v8';
import vm from 'node:vm';

import { HoulsbyConfig } from '@peft/adapter';
import {
  PeftModel,
  evaluate,
  getPeftModel,
  memoryStore,
  parseSafetensors,
  serializeSafetensors,
  type FileStore,
  type PeftConfig,
  type TensorToWrite,
} from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { PrefixTuningConfig } from '@peft/prefix';
import { MultitaskPromptTuningConfig, PromptTuningConfig } from '@peft/prompt';
import { PTuningConfig } from '@peft/ptuning';
import { fixtureHosts, logits, maxDiff } from '@peft/test-helpers';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it, vi } from 'vitest';

const loadHost = fixtureHosts();
const LOCATION = 'mem:/adapter';
const CONFIG = `${LOCATION}/adapter_config.json`;
const WEIGHTS = `${LOCATION}/adapter_model.safetensors`;

/** The files `config` saves on the fixture `fixture`, in a memory store. */
async function saved(fixture: string, config: PeftConfig): Promise<Map<string, Uint8Array>> {
  const model = getPeftModel(await loadHost(fixture), config);
  const store = memoryStore({}, LOCATION);
  await model.saveAdapter(store);
  model.dispose();
  return store.files;
}

/** A JSON value written as it stands in the file (1e999, which JSON.stringify cannot write). */
const raw = (text: string): string => `@@raw:${text}@@`;

/** The files with adapter_config.json changed by `patch` (values made with raw() go in verbatim). */
function patchConfig(
  files: ReadonlyMap<string, Uint8Array>,
  patch: (json: Record<string, unknown>) => void,
): Map<string, Uint8Array> {
  const json = JSON.parse(new TextDecoder().decode(files.get('adapter_config.json'))) as Record<string, unknown>;
  patch(json);
  const text = JSON.stringify(json).replace(/"@@raw:(.*?)@@"/g, '$1');
  return new Map([...files, ['adapter_config.json', new TextEncoder().encode(text)]]);
}

/** A patchConfig patch that sets one top-level key of adapter_config.json. */
const setKey =
  (key: string, value: unknown) =>
  (json: Record<string, unknown>): void => {
    json[key] = value;
  };

/** The files with the weights file's tensors changed by `change` (the file is written anew). */
function patchWeights(
  files: ReadonlyMap<string, Uint8Array>,
  name: string,
  change: (tensors: Record<string, TensorToWrite>) => void,
): Map<string, Uint8Array> {
  const file = parseSafetensors(files.get(name)!, name);
  const tensors: Record<string, TensorToWrite> = {};
  for (const key of file.entries.keys()) {
    const { shape, values } = file.tensor(key);
    tensors[key] = { shape, values: Float32Array.from(values) };
  }
  change(tensors);
  return new Map([...files, [name, serializeSafetensors(tensors, file.metadata)]]);
}

const store = (files: ReadonlyMap<string, Uint8Array>): FileStore => memoryStore(Object.fromEntries(files), LOCATION);

/**
 * Loads the files on a fixture host and returns the error, with the tensors tfjs made while it tried
 * (every tensor passes the engine's trackTensor) and the ones it left.
 */
async function failedLoad(
  fixture: string,
  files: ReadonlyMap<string, Uint8Array>,
): Promise<{ message: string; made: number; left: number }> {
  const host = await loadHost(fixture);
  const before = tf.memory().numTensors;
  const track = vi.spyOn(tf.engine() as unknown as { trackTensor(...args: unknown[]): void }, 'trackTensor');
  let message = 'it loaded';
  let made = 0;
  try {
    await PeftModel.fromPretrained(host, store(files));
  } catch (error) {
    message = (error as Error).message;
  } finally {
    // read before mockRestore, which clears the recorded calls
    made = track.mock.calls.length;
    track.mockRestore();
  }
  return { message, made, left: tf.memory().numTensors - before };
}

describe('adapter names are one folder name: none reaches another adapter files', () => {
  it.each(['.', '..', 'x/..', 'a/b', 'a\\b', '', '__base__'])('refuses %j, naming it', async (name) => {
    const host = await loadHost('gpt2-tied');
    const model = getPeftModel(host, new LoraConfig({ r: 2 }));
    const expected =
      name === '__base__'
        ? 'adapter name "__base__": reserved for the base model in mixed batches (BASE_ADAPTER)'
        : `adapter name ${JSON.stringify(name)}: not a folder name (an adapter is saved in a sub-folder of its name: ` +
          'a name cannot be empty, "." or "..", or hold "/" or "\\")';
    expect(() => model.addAdapter(name, new LoraConfig({ r: 2 }))).toThrow(expected);
    expect(() => model.addWeightedAdapter(['default'], [1], name)).toThrow(expected);
    const files = await saved('gpt2-tied', new LoraConfig({ r: 2 }));
    await expect(model.loadAdapter(store(files), name)).rejects.toThrow(expected);
    expect(model.adapterNames).toEqual(['default']);
    model.dispose();
  });

  it('refuses a name read from an AdapterHub config, naming the file', async () => {
    const files = patchConfig(await saved('gpt2-tied', HoulsbyConfig({ reductionFactor: 4 })), setKey('name', 'x/..'));
    const { message } = await failedLoad('gpt2-tied', files);
    expect(message).toBe(
      `${CONFIG}: "name": adapter name "x/..": not a folder name (an adapter is saved in a sub-folder of its name: ` +
        'a name cannot be empty, "." or "..", or hold "/" or "\\")',
    );
  });
});

interface OversizedCase {
  name: string;
  fixture: string;
  config: () => PeftConfig;
  patch: (json: Record<string, unknown>) => void;
  weights?: string;
  /** The error, exactly. */
  message: string;
}

const HOULSBY_KEY = 'transformer.h.0.attention_adapters.adapters.default.adapter_down.0.weight';

/** Configs that ask for more than their weights hold, or than the host has room for. */
const OVERSIZED: OversizedCase[] = [
  {
    name: 'prefix num_virtual_tokens 400000 (rotary host: no position limit)',
    fixture: 'llama-gqa-untied',
    config: () => new PrefixTuningConfig({ numVirtualTokens: 4 }),
    patch: setKey('num_virtual_tokens', 400000),
    message:
      `${WEIGHTS}: tensor "prompt_embeddings" has shape [4,64], expected [400000,64] from ${CONFIG} ` +
      "(num_virtual_tokens 400000 x the model's 2 layers x 2 x key/value width 16)",
  },
  {
    name: 'prefix num_virtual_tokens 1e8',
    fixture: 'llama-gqa-untied',
    config: () => new PrefixTuningConfig({ numVirtualTokens: 4 }),
    patch: setKey('num_virtual_tokens', 1e8),
    message:
      `${WEIGHTS}: tensor "prompt_embeddings" has shape [4,64], expected [100000000,64] from ${CONFIG} ` +
      "(num_virtual_tokens 100000000 x the model's 2 layers x 2 x key/value width 16)",
  },
  {
    name: 'prefix num_virtual_tokens 400000 on a 32-position host',
    fixture: 'gpt2-tied',
    config: () => new PrefixTuningConfig({ numVirtualTokens: 4 }),
    patch: setKey('num_virtual_tokens', 400000),
    message:
      `${CONFIG}: num_virtual_tokens: 400000 virtual tokens, but this gpt2 model has 32 positions ` +
      '(at most 31 virtual tokens, to leave room for one token of input)',
  },
  {
    name: 'prompt tuning num_virtual_tokens 2M',
    fixture: 'llama-gqa-untied',
    config: () => new PromptTuningConfig({ numVirtualTokens: 4 }),
    patch: setKey('num_virtual_tokens', 2_000_000),
    message:
      `${WEIGHTS}: tensor "prompt_embeddings" has shape [4,32], expected [2000000,32] from ${CONFIG} ` +
      "(num_virtual_tokens 2000000 x the model's hidden size 32)",
  },
  {
    name: 'prompt tuning num_virtual_tokens 1e8 on a 32-position host',
    fixture: 'gpt2-tied',
    config: () => new PromptTuningConfig({ numVirtualTokens: 4 }),
    patch: setKey('num_virtual_tokens', 1e8),
    message:
      `${CONFIG}: num_virtual_tokens: 100000000 virtual tokens, but this gpt2 model has 32 positions ` +
      '(at most 31 virtual tokens, to leave room for one token of input)',
  },
  {
    name: 'P-tuning num_virtual_tokens 1e8',
    fixture: 'llama-gqa-untied',
    config: () => new PTuningConfig({ numVirtualTokens: 4, encoderHiddenSize: 8 }),
    patch: setKey('num_virtual_tokens', 1e8),
    message:
      `${WEIGHTS}: tensor "prompt_embeddings" has shape [4,32], expected [100000000,32] from ${CONFIG} ` +
      "(num_virtual_tokens 100000000 x the model's hidden size 32)",
  },
  {
    name: 'multi-task prompt num_tasks 1e6',
    fixture: 'llama-gqa-untied',
    config: () => new MultitaskPromptTuningConfig({ numVirtualTokens: 4, numTasks: 2 }),
    patch: setKey('num_tasks', 1e6),
    message:
      `${WEIGHTS}: tensor "prefix_task_cols" has shape [2,4,1], expected [1000000,4,1] from ${CONFIG} ` +
      '(num_tasks 1000000 x num_virtual_tokens 4 x num_ranks 1)',
  },
  {
    name: 'LoRA r 1e8',
    fixture: 'gpt2-tied',
    config: () => new LoraConfig({ r: 4 }),
    patch: setKey('r', 1e8),
    message:
      `${WEIGHTS}: tensor "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight" has shape [4,24], ` +
      `expected [100000000,24] from ${CONFIG} (r 100000000 for transformer.h.0.attn.c_attn)`,
  },
  {
    name: 'bottleneck reduction_factor 0.001',
    fixture: 'gpt2-tied',
    config: () => HoulsbyConfig({ reductionFactor: 4 }),
    patch: (json) => {
      (json.config as Record<string, unknown>).reduction_factor = 0.001;
    },
    weights: 'adapter.safetensors',
    message:
      `${LOCATION}/adapter.safetensors: tensor "${HOULSBY_KEY}" has shape [6,24], expected [24000,24] from ` +
      `${CONFIG} (reduction_factor 0.001: bottleneck size of the hidden size 24 / 0.001 = 24000)`,
  },
];

describe('adapter configs are checked against the weights file and the host before any tensor is made', () => {
  it.each(OVERSIZED)('$name: refused, naming the file and the field', async ({ fixture, config, patch, message }) => {
    const files = patchConfig(await saved(fixture, config()), patch);
    const result = await failedLoad(fixture, files);
    expect(result.message).toBe(message);
    expect(result.made, 'tensors made while loading').toBe(0);
    expect(result.left, 'tensors left').toBe(0);
  });

  it('a missing tensor late in the file is found before the first one is made', async () => {
    const files = patchWeights(await saved('gpt2-tied', new LoraConfig({ r: 4 })), 'adapter_model.safetensors', (t) => {
      delete t['base_model.model.transformer.h.1.attn.c_attn.lora_B.weight'];
    });
    const result = await failedLoad('gpt2-tied', files);
    expect(result.message).toBe(
      `${WEIGHTS}: tensor "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight" is missing ` +
        `(expected [72,4] from ${CONFIG} (r 4 for transformer.h.1.attn.c_attn))`,
    );
    expect(result.made, 'tensors made while loading').toBe(0);
  });

  it('modules_to_save that is not a list of names, or names no module of the host, is refused naming the file', async () => {
    const files = await saved('gpt2-tied', new LoraConfig({ r: 4 }));
    for (const [value, message] of [
      ['lm_head', 'modules_to_save: expected a list of module names, got "lm_head"'],
      [['nothing'], 'modules_to_save: no module "nothing" in the host (heads: lm_head)'],
    ] as const) {
      const result = await failedLoad('gpt2-tied', patchConfig(files, setKey('modules_to_save', value)));
      expect(result.message).toBe(`${CONFIG}: ${message}`);
      expect(result.made, 'tensors made while loading').toBe(0);
    }
  });

  it('a user-made config asking for more virtual tokens than the host has positions is refused before allocating', async () => {
    const host = await loadHost('gpt2-tied');
    const before = tf.memory().numTensors;
    expect(() => getPeftModel(host, new PrefixTuningConfig({ numVirtualTokens: 400_000 }))).toThrow(
      'PrefixTuningConfig.numVirtualTokens: 400000 virtual tokens, but this gpt2 model has 32 positions',
    );
    expect(() => getPeftModel(host, new PromptTuningConfig({ numVirtualTokens: 2_000_000 }))).toThrow(
      'PromptTuningConfig.numVirtualTokens: 2000000 virtual tokens, but this gpt2 model has 32 positions',
    );
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('alpha_pattern holds finite positive numbers', () => {
  it.each([
    ['"x"', 'x', 'LoraConfig.alphaPattern["c_attn"]: expected a finite positive number, got "x"'],
    ['1e999', raw('1e999'), 'LoraConfig.alphaPattern["c_attn"]: expected a finite positive number, got Infinity'],
    ['-8', -8, 'LoraConfig.alphaPattern["c_attn"]: expected a finite positive number, got -8'],
  ])('alpha_pattern {"c_attn": %s} is refused, naming the file and the key', async (_, value, message) => {
    const files = patchConfig(
      await saved('gpt2-tied', new LoraConfig({ r: 4 })),
      setKey('alpha_pattern', { c_attn: value }),
    );
    expect((await failedLoad('gpt2-tied', files)).message).toBe(`${CONFIG}: ${message}`);
  });

  it('alpha_pattern "x" (not an object) and a pattern that is no regular expression are refused', async () => {
    const base = await saved('gpt2-tied', new LoraConfig({ r: 4 }));
    const notObject = patchConfig(base, setKey('alpha_pattern', 'x'));
    expect((await failedLoad('gpt2-tied', notObject)).message).toBe(
      `${CONFIG}: LoraConfig.alphaPattern: expected an object of module-path patterns to values ` +
        '(a finite positive number each), got "x"',
    );
    const badRegex = patchConfig(base, setKey('rank_pattern', { '(': 4 }));
    expect((await failedLoad('gpt2-tied', badRegex)).message).toBe(
      `${CONFIG}: LoraConfig.rankPattern key "(": expected a valid regular expression, got "("`,
    );
  });

  it('LoraConfig refuses a NaN alpha in code too', () => {
    expect(() => new LoraConfig({ alphaPattern: { c_attn: Number.NaN } })).toThrow(
      'LoraConfig.alphaPattern["c_attn"]: expected a finite positive number, got NaN',
    );
  });
});

interface WeightsCase {
  name: string;
  fixture: string;
  config: () => PeftConfig;
  weights: string;
  /** The tensor given a non-finite value. */
  tensor: string;
}

const NON_FINITE: WeightsCase[] = [
  {
    name: 'LoRA (last tensor: after the others were loaded)',
    fixture: 'gpt2-tied',
    config: () => new LoraConfig({ r: 4, initLoraWeights: false }),
    weights: 'adapter_model.safetensors',
    tensor: 'base_model.model.transformer.h.1.attn.c_attn.lora_B.weight',
  },
  {
    name: 'LoRA with a classifier to save (BERT)',
    fixture: 'bert-sequence-classification',
    config: () => new LoraConfig({ r: 4, taskType: 'SEQ_CLS' }),
    weights: 'adapter_model.safetensors',
    tensor: 'base_model.model.classifier.weight',
  },
  {
    name: 'prefix tuning',
    fixture: 'llama-gqa-untied',
    config: () => new PrefixTuningConfig({ numVirtualTokens: 4 }),
    weights: 'adapter_model.safetensors',
    tensor: 'prompt_embeddings',
  },
  {
    name: 'prompt tuning',
    fixture: 'gpt2-tied',
    config: () => new PromptTuningConfig({ numVirtualTokens: 4 }),
    weights: 'adapter_model.safetensors',
    tensor: 'prompt_embeddings',
  },
  {
    name: 'Houlsby adapter',
    fixture: 'gpt2-tied',
    config: () => HoulsbyConfig({ reductionFactor: 4 }),
    weights: 'adapter.safetensors',
    tensor: 'transformer.h.1.output_adapters.adapters.default.adapter_up.weight',
  },
];

describe('adapter weights are finite', () => {
  it.each(NON_FINITE)('$name: NaN and Infinity are refused, naming the file and the tensor', async (c) => {
    const files = await saved(c.fixture, c.config());
    for (const [value, shown] of [
      [Number.NaN, 'NaN'],
      [Number.NEGATIVE_INFINITY, '-Infinity'],
    ] as const) {
      let shape: readonly number[] = [];
      const broken = patchWeights(files, c.weights, (tensors) => {
        const tensor = tensors[c.tensor]!;
        shape = tensor.shape;
        tensor.values[3] = value;
        tensor.values[5] = value;
      });
      const result = await failedLoad(c.fixture, broken);
      expect(result.message).toBe(
        `${LOCATION}/${c.weights}: tensor "${c.tensor}" [${shape}] holds 2 non-finite values ` +
          `(first: ${shown} at flat index 3); an adapter's weights must be finite numbers`,
      );
      expect(result.left, 'tensors left').toBe(0);
    }
  });
});

/** gc() without --expose-gc: the flag can be set at run time, and a new context then has the function. */
function collectGarbage(): void {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
}

describe('failed adapter loads free what they made', () => {
  it('ten rounds of every failing load: no tensor and no memory kept', async () => {
    const loads: { fixture: string; files: Map<string, Uint8Array>; into?: PeftConfig }[] = [];
    for (const c of OVERSIZED)
      loads.push({ fixture: c.fixture, files: patchConfig(await saved(c.fixture, c.config()), c.patch) });
    for (const c of NON_FINITE) {
      const files = patchWeights(await saved(c.fixture, c.config()), c.weights, (tensors) => {
        tensors[c.tensor]!.values[0] = Number.NaN;
      });
      loads.push({ fixture: c.fixture, files });
      // into a model that already has an adapter of the method (and its saved modules)
      loads.push({ fixture: c.fixture, files, into: c.config() });
    }
    const lora = await saved('gpt2-tied', new LoraConfig({ r: 4 }));
    loads.push({
      fixture: 'gpt2-tied',
      // a tensor no config explains: found after the adapter's tensors are made
      files: patchWeights(lora, 'adapter_model.safetensors', (t) => {
        t['base_model.model.extra.weight'] = { shape: [2], values: new Float32Array(2) };
      }),
    });
    loads.push({
      fixture: 'gpt2-tied',
      files: patchConfig(lora, setKey('alpha_pattern', { c_attn: 'x' })),
    });
    const hosts = new Map<string, Awaited<ReturnType<typeof loadHost>>>();
    for (const { fixture } of loads) if (!hosts.has(fixture)) hosts.set(fixture, await loadHost(fixture));
    const round = async (): Promise<number> => {
      let failures = 0;
      for (const { fixture, files, into } of loads) {
        const host = hosts.get(fixture)!;
        const model = into ? getPeftModel(host, into, 'other') : null;
        try {
          if (model) await model.loadAdapter(store(files));
          else await PeftModel.fromPretrained(host, store(files));
        } catch {
          failures++;
        }
        model?.dispose();
      }
      return failures;
    };
    const input = { inputIds: [[3, 5, 7, 11]] };
    const baseLogits = new Map([...hosts].map(([fixture, host]) => [fixture, logits(host, input)]));
    await round(); // warm-up: kernels, caches
    collectGarbage();
    const tensors = tf.memory().numTensors;
    const rss = process.memoryUsage().rss;
    let failures = 0;
    for (let i = 0; i < 10; i++) failures += await round();
    collectGarbage();
    const grownTensors = tf.memory().numTensors - tensors;
    const grownMb = (process.memoryUsage().rss - rss) / 2 ** 20;
    console.log(
      `[leaks] ${failures} failed loads (${loads.length} kinds x 10): tensors ${tensors} -> ${tf.memory().numTensors}, ` +
        `RSS ${grownMb >= 0 ? '+' : ''}${grownMb.toFixed(1)} MB`,
    );
    expect(failures).toBe(loads.length * 10);
    expect(grownTensors).toBe(0);
    expect(grownMb).toBeLessThan(32);
    // no hook, delta or head value of a failed adapter stayed in a host
    for (const [fixture, host] of hosts)
      expect(maxDiff(logits(host, input), baseLogits.get(fixture)!), `${fixture}: logits after the failed loads`).toBe(
        0,
      );
  });
});

describe('failing evaluations and merges free what they made, and leave the model as it was', () => {
  it('ten rounds of each: evaluate (bad label, bad example, a throwing forward), merge and mergeAndUnload (NaN ΔW, unmergeable method)', async () => {
    const host = await loadHost('gpt2-tied');
    const lora = getPeftModel(host, new LoraConfig({ r: 4, initLoraWeights: false }));
    const input = { inputIds: [[3, 5, 7, 11]] };
    const before = logits(lora, input);
    // a NaN in the last LoRA B: every other layer's ΔW is fine, so a merge that is not all-or-nothing shows
    const variables = [...lora.trainableVariables()].filter(([name]) => name.includes('lora_B'));
    const [poisonedName, poisoned] = variables[variables.length - 1]!;
    const saved = poisoned.clone();
    // runs `call` with every value of that B NaN, and puts the weights back whatever it did
    const withNaN = (call: () => unknown): void => {
      tf.tidy(() => poisoned.assign(tf.fill(poisoned.shape, Number.NaN)));
      try {
        call();
      } finally {
        poisoned.assign(saved);
      }
    };
    const examples = [
      { inputIds: [2, 3, 4, 5], labels: [2, 3, 4, 5] },
      { inputIds: [2, 3, 4, 5], labels: [2, 3, 4, 5] },
    ];
    const options = { task: 'causal-lm' as const, padTokenId: 0, batchSize: 1, data: examples, learningRate: 1e-3 };
    // the forward pass throws on the second batch, after the first one's loss was read
    let forwards = 0;
    const linear = host.linears.get('transformer.h.1.mlp.c_fc')!;
    linear.addDelta('thrower', (x) => {
      if (++forwards % 2 === 0) throw new Error('injected failure in the forward pass');
      return tf.zerosLike(tf.matMul(x, tf.zeros([x.shape[1], linear.outFeatures]))) as tf.Tensor2D;
    });
    const prompt = getPeftModel(await loadHost('gpt2-tied'), new PromptTuningConfig({ numVirtualTokens: 4 }));
    const failing: [string, () => unknown, string][] = [
      [
        'evaluate: a label outside the vocabulary',
        () => evaluate(lora, [{ inputIds: [2, 3], labels: [2, 99_999] }], options),
        'validation[0].labels[1]: 99999 is outside the vocabulary',
      ],
      [
        'evaluate: an empty example',
        () => evaluate(lora, [examples[0]!, { inputIds: [], labels: [] }], options),
        'validation[1].inputIds: empty',
      ],
      [
        'evaluate: the forward pass throws on the second batch',
        () => evaluate(lora, examples, options),
        'injected failure',
      ],
      ['merge: a NaN in one layer ΔW', () => withNaN(() => lora.merge()), 'ΔW holds NaN or Inf; refusing to merge it'],
      [
        'mergeAndUnload: a NaN in one layer ΔW',
        () => withNaN(() => lora.mergeAndUnload()),
        'ΔW holds NaN or Inf; refusing to merge it',
      ],
      ['merge: prompt tuning', () => prompt.merge(), 'PROMPT_TUNING adapters cannot be merged'],
      ['mergeAndUnload: prompt tuning', () => prompt.mergeAndUnload(), 'PROMPT_TUNING adapters cannot be merged'],
    ];
    const round = async (): Promise<void> => {
      for (const [name, call, message] of failing) {
        forwards = 0;
        await expect(Promise.resolve().then(call), name).rejects.toThrow(message);
      }
    };
    await round(); // warm-up: kernels, caches
    collectGarbage();
    const tensors = tf.memory().numTensors;
    const rss = process.memoryUsage().rss;
    for (let i = 0; i < 10; i++) await round();
    collectGarbage();
    const grownMb = (process.memoryUsage().rss - rss) / 2 ** 20;
    console.log(
      `[leaks] ${failing.length} failing evaluate/merge calls x 10: tensors ${tensors} -> ${tf.memory().numTensors}, ` +
        `RSS ${grownMb >= 0 ? '+' : ''}${grownMb.toFixed(1)} MB`,
    );
    expect(tf.memory().numTensors).toBe(tensors);
    expect(grownMb).toBeLessThan(32);
    // nothing was merged, the adapters are still there and compute what they did
    linear.removeDelta('thrower');
    expect(lora.adapterNames, poisonedName).toEqual(['default']);
    expect(maxDiff(logits(lora, input), before)).toBe(0);
    expect(prompt.adapterNames).toEqual(['default']);
    saved.dispose();
    lora.dispose();
    prompt.dispose();
  });
});
