// Property-based tests of the adapter config readers (issue 23): a valid saved adapter of every method
// with its adapter_config.json replaced by any JSON value, by the valid config with fields set to
// hostile values (huge, non-finite, negative, fractional, -0, long strings, deep nesting, values of
// the wrong kind, keys of Object.prototype, unknown peft_type), or by the valid file's bytes cut short
// or garbled. Loaded on a fixture host next to the valid weights file, each is an adapter or an Error
// naming the adapter's files; never another throw, never a tensor left behind, never more tensor
// values made than a small factor times what the weights file holds, never a slow case.
import { HoulsbyConfig, PfeifferConfig } from '@peft/adapter';
import {
  ADAPTER_CONFIG_FILE,
  PeftModel,
  getPeftModel,
  memoryStore,
  parseSafetensors,
  type PeftConfig,
  type PeftHost,
} from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { PrefixTuningConfig } from '@peft/prefix';
import { MultitaskPromptTuningConfig, PromptTuningConfig } from '@peft/prompt';
import { PTuningConfig } from '@peft/ptuning';
import { fixtureHosts, logits, maxDiff } from '@peft/test-helpers';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, describe, expect, it, vi } from 'vitest';

const loadHost = fixtureHosts();
const LOCATION = 'mem:/adapter';

/** An error of a load names one of the adapter's files (the config, or the weights file and the config). */
const NAMES_THE_FILES = /^mem:\/adapter\/(adapter_config\.json|adapter_model\.safetensors|adapter\.safetensors): /;
/**
 * Tensor values a load may make per value of the weights file: a valid load makes 4 to 5.2 (the
 * adapter's variables, their initial values and the loaded ones, layout copies); the slack is scalars.
 */
const VALUES_PER_FILE_VALUE = 8;
const SLACK_VALUES = 256;
/** A valid load takes under 10 ms here; a case is work of the config's size, not of its numbers. */
const CASE_LIMIT_MS = 2000;

const METHODS: { name: string; fixture: string; config: () => PeftConfig }[] = [
  { name: 'LoRA', fixture: 'gpt2-tied', config: () => new LoraConfig({ r: 4 }) },
  {
    name: 'LoRA with a classifier to save',
    fixture: 'bert-sequence-classification',
    config: () => new LoraConfig({ r: 4, taskType: 'SEQ_CLS' }),
  },
  { name: 'prefix tuning', fixture: 'llama-gqa-untied', config: () => new PrefixTuningConfig({ numVirtualTokens: 4 }) },
  { name: 'prompt tuning', fixture: 'gpt2-tied', config: () => new PromptTuningConfig({ numVirtualTokens: 4 }) },
  {
    name: 'P-tuning',
    fixture: 'llama-gqa-untied',
    config: () => new PTuningConfig({ numVirtualTokens: 4, encoderHiddenSize: 8 }),
  },
  {
    name: 'multitask prompt tuning',
    fixture: 'llama-gqa-untied',
    config: () => new MultitaskPromptTuningConfig({ numVirtualTokens: 4, numTasks: 2 }),
  },
  { name: 'Houlsby adapter', fixture: 'gpt2-tied', config: () => HoulsbyConfig({ reductionFactor: 4 }) },
  { name: 'Pfeiffer adapter', fixture: 'llama-gqa-untied', config: () => PfeifferConfig({ reductionFactor: 4 }) },
];

interface SavedAdapter {
  name: string;
  host: PeftHost;
  files: Record<string, Uint8Array>;
  /** Its adapter_config.json, parsed. */
  json: Record<string, unknown>;
  /** Values the weights file holds. */
  values: number;
}

/** Every method's adapter saved on its fixture host (hosts are disposed after each test). */
async function savedAdapters(): Promise<SavedAdapter[]> {
  const hosts = new Map<string, PeftHost>();
  const adapters: SavedAdapter[] = [];
  for (const { name, fixture, config } of METHODS) {
    if (!hosts.has(fixture)) hosts.set(fixture, await loadHost(fixture));
    const host = hosts.get(fixture)!;
    const model = getPeftModel(host, config());
    const store = memoryStore({}, LOCATION);
    await model.saveAdapter(store);
    model.dispose();
    let values = 0;
    for (const [file, bytes] of store.files)
      if (file.endsWith('.safetensors'))
        for (const entry of parseSafetensors(bytes, file).entries.values())
          values += entry.shape.reduce((product, size) => product * size, 1);
    const json = JSON.parse(new TextDecoder().decode(store.files.get(ADAPTER_CONFIG_FILE))) as Record<string, unknown>;
    adapters.push({ name, host, files: Object.fromEntries(store.files), json, values });
  }
  return adapters;
}

const count = { cases: 0, loaded: 0 };
const started = performance.now();
afterAll(() => {
  console.log(
    `[adapter config fuzz] ${count.cases} generated cases (${count.loaded} loaded) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
});

type TrackTensor = { trackTensor(tensor: tf.Tensor, ...rest: unknown[]): void };

/**
 * Loads `adapter` with `config` as its adapter_config.json: an adapter (disposed) or an Error naming
 * its files, no tensor left, at most the weights file's values times a small factor made, in time.
 * Returns whether it loaded.
 */
async function check(adapter: SavedAdapter, config: Uint8Array): Promise<boolean> {
  const store = memoryStore({ ...adapter.files, [ADAPTER_CONFIG_FILE]: config }, LOCATION);
  const tensors = tf.memory().numTensors;
  const track = vi.spyOn(tf.engine() as unknown as TrackTensor, 'trackTensor');
  const start = performance.now();
  let loaded = false;
  let made = 0;
  try {
    (await PeftModel.fromPretrained(adapter.host, store)).dispose();
    loaded = true;
  } catch (error) {
    expect((error as Error).constructor, String(error)).toBe(Error);
    expect((error as Error).message).toMatch(NAMES_THE_FILES);
  } finally {
    // mockRestore clears mock.calls: read them first
    for (const [tensor] of track.mock.calls) made += tensor.size;
    track.mockRestore();
  }
  expect(performance.now() - start, 'milliseconds').toBeLessThan(CASE_LIMIT_MS);
  expect(made, `tensor values made (the weights file holds ${adapter.values})`).toBeLessThanOrEqual(
    VALUES_PER_FILE_VALUE * adapter.values + SLACK_VALUES,
  );
  expect(tf.memory().numTensors, 'tensors left').toBe(tensors);
  return loaded;
}

/** check() on one generated case, counted. */
async function fuzz(adapter: SavedAdapter, config: Uint8Array): Promise<void> {
  count.cases++;
  if (await check(adapter, config)) count.loaded++;
}

const encode = (text: string): Uint8Array => new TextEncoder().encode(text);

/** A JSON value nested `depth` deep: `[[[...]]]` or `{"a":{"a":...}}`. */
const deep = (depth: number, array: boolean): string =>
  array ? '['.repeat(depth) + ']'.repeat(depth) : `${'{"a":'.repeat(depth)}0${'}'.repeat(depth)}`;
const nested = fc.tuple(fc.integer({ min: 1, max: 10_000 }), fc.boolean()).map(([depth, array]) => deep(depth, array));

/** Hostile values as JSON text (so that -0 and 1e999 can be written: JSON.stringify cannot). */
const hostile = fc.oneof(
  fc.constantFrom('-1', '0', '-0', '0.5', '1', '2', '3', '4.000000001', '7', '64', '1e-300', '5e-324'),
  fc.constantFrom('2147483648', '4294967296', '9007199254740993', '1e12', '1e21', '1e308', '1e999', '-1e999'),
  fc.integer({ min: -100, max: 300 }).map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((value) => JSON.stringify(value)),
  fc.constantFrom('"NaN"', '"Infinity"', '"-0"', '"4"', '""', '"__proto__"', '"constructor"', '"toString"'),
  fc.constantFrom('"LORA"', '"PREFIX_TUNING"', '"PROMPT_TUNING"', '"P_TUNING"', '"MULTITASK_PROMPT_TUNING"', '"lora"'),
  fc.constantFrom('"CAUSAL_LM"', '"SEQ_CLS"', '"TOKEN_CLS"', '"SEQ_2_SEQ_LM"', '"relu"', '"swish"', '"default"'),
  fc.integer({ min: 1000, max: 200_000 }).map((length) => JSON.stringify('x'.repeat(length))),
  fc.string({ maxLength: 8 }).map((text) => JSON.stringify(text)),
  fc.constantFrom('null', 'true', 'false', '[]', '{}', '[4]', '["c_attn"]', '[null]', '[{}]', '[-1, 1e999]'),
  fc.constantFrom('{"__proto__": {"r": 100000000}}', '{"constructor": {"prototype": {"r": 1}}}', '{"c_attn": -0}'),
  fc.jsonValue({ maxDepth: 2 }).map((value) => JSON.stringify(value)),
  nested,
);

/** Where a hostile value goes: a key of the config, or of one of its objects (AdapterHub's "config"). */
type FieldPath = [key: string] | [parent: string, key: string];

/** Every field a reader looks at, of any method (a LoRA field in a prefix config too), and Object.prototype's. */
function fieldPaths(adapters: readonly SavedAdapter[]): FieldPath[] {
  const paths = new Map<string, FieldPath>();
  const add = (path: FieldPath): void => void paths.set(path.join('.'), path);
  for (const { json } of adapters)
    for (const [key, value] of Object.entries(json)) {
      add([key]);
      if (value !== null && typeof value === 'object' && !Array.isArray(value))
        for (const inner of [...Object.keys(value), '__proto__', 'constructor']) add([key, inner]);
    }
  for (const key of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'savedName', 'peftType']) add([key]);
  return [...paths.values()];
}

/**
 * The config with `edits` made, each value written as its JSON text. Keys are defined, not assigned:
 * `__proto__` becomes an own key, as JSON.parse makes it.
 */
function edited(json: Record<string, unknown>, edits: readonly [FieldPath, string][]): string {
  const copy = structuredClone(json);
  const values: string[] = [];
  const set = (target: Record<string, unknown>, key: string, text: string): void => {
    Object.defineProperty(target, key, { value: `@@${values.length}@@`, enumerable: true, writable: true });
    values.push(text);
  };
  for (const [path, text] of edits) {
    if (path.length === 1) {
      set(copy, path[0], text);
      continue;
    }
    const parent = Object.hasOwn(copy, path[0]) ? copy[path[0]] : undefined;
    if (parent !== null && typeof parent === 'object' && !Array.isArray(parent))
      set(parent as Record<string, unknown>, path[1], text);
    else set(copy, path[0], `{${JSON.stringify(path[1])}: ${text}}`);
  }
  return JSON.stringify(copy).replace(/"@@(\d+)@@"/g, (_, index: string) => values[Number(index)]!);
}

describe('adapter config readers (fast-check)', () => {
  it('any JSON value as adapter_config.json: an adapter or an Error naming the file', async () => {
    const adapters = await savedAdapters();
    const file = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)),
      fc.constantFrom('null', '0', '-0', '1e999', '""', '"LORA"', '[]', '[{}]', '{}', '{"peft_type": null}'),
      fc.constantFrom('{"__proto__": {"peft_type": "LORA"}}', '{"peft_type": "toString"}', '{"config": null}'),
      fc.constantFrom('{"peft_type": "__proto__"}', '{"peft_type": "constructor"}', '{"config": {}, "name": "x"}'),
      nested,
    );
    await fc.assert(
      fc.asyncProperty(fc.nat(adapters.length - 1), file, (index, text) => fuzz(adapters[index]!, encode(text))),
      { numRuns: 1000 },
    );
  });

  it('a valid config with hostile fields: an adapter or an Error naming the file and the field', async () => {
    const adapters = await savedAdapters();
    const paths = fieldPaths(adapters);
    const before = adapters.map(({ host }) => logits(host, { inputIds: [[3, 5, 7, 11]] }));
    await fc.assert(
      fc.asyncProperty(
        fc.nat(adapters.length - 1),
        fc.array(fc.tuple(fc.constantFrom(...paths), hostile), { minLength: 1, maxLength: 3 }),
        (index, edits) => fuzz(adapters[index]!, encode(edited(adapters[index]!.json, edits))),
      ),
      { numRuns: 4000 },
    );
    // no hook of an adapter loaded or refused stayed in a host
    adapters.forEach(({ name, host }, index) => {
      expect(maxDiff(logits(host, { inputIds: [[3, 5, 7, 11]] }), before[index]!), name).toBe(0);
    });
  });

  it('the valid file cut short or with bytes garbled (not JSON, not UTF-8): an adapter or an Error naming the file', async () => {
    const adapters = await savedAdapters();
    const garbled = fc.record({
      index: fc.nat(adapters.length - 1),
      cut: fc.option(fc.nat()),
      bytes: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
    });
    await fc.assert(
      fc.asyncProperty(garbled, ({ index, cut, bytes }) => {
        const adapter = adapters[index]!;
        const valid = adapter.files[ADAPTER_CONFIG_FILE]!;
        const config = valid.slice(0, cut === null ? valid.length : cut % valid.length);
        for (const [at, byte] of bytes) if (config.length > 0) config[at % config.length] = byte;
        return fuzz(adapter, config);
      }),
      { numRuns: 1500 },
    );
  });
});

/** Cases fast-check found, reduced by hand: the config is refused, but not with an Error naming the file. */
const FOUND: { name: string; method: string; config: (json: Record<string, unknown>) => string }[] = [
  // TypeError: Cannot read properties of null (reading 'peft_type') (core methodFor)
  { name: 'adapter_config.json holding null', method: 'LoRA', config: () => 'null' },
  // RangeError: Maximum call stack size exceeded (JSON.stringify of the value in the message)
  {
    name: 'peft_type nested 10000 deep',
    method: 'LoRA',
    config: (json) => edited(json, [[['peft_type'], deep(10_000, true)]]),
  },
  {
    name: 'LoRA layer_replication nested 10000 deep',
    method: 'LoRA',
    config: (json) => edited(json, [[['layer_replication'], deep(10_000, true)]]),
  },
  {
    name: 'AdapterHub inv_adapter nested 10000 deep',
    method: 'Houlsby adapter',
    config: (json) => edited(json, [[['config', 'inv_adapter'], deep(10_000, true)]]),
  },
  {
    name: 'AdapterHub leave_out nested 10000 deep',
    method: 'Houlsby adapter',
    config: (json) => edited(json, [[['config', 'leave_out'], deep(10_000, true)]]),
  },
  // RangeError: Maximum call stack size exceeded (String() of the array in the message; CI, seed 780551420)
  {
    name: 'prefix num_transformer_submodules nested 5000 deep',
    method: 'prefix tuning',
    config: (json) => edited(json, [[['num_transformer_submodules'], deep(5000, true)]]),
  },
  {
    name: 'AdapterHub architecture nested 5000 deep',
    method: 'Houlsby adapter',
    config: (json) => edited(json, [[['config', 'architecture'], deep(5000, true)]]),
  },
  // "BottleneckConfig.nonLinearity: unsupported activation "x" (supported: ...)" (thrown by attach)
  {
    name: 'AdapterHub non_linearity "x"',
    method: 'Houlsby adapter',
    config: (json) => edited(json, [[['config', 'non_linearity'], '"x"']]),
  },
  // "BottleneckConfig.leaveOut: layers 1 are outside 0..1": the string is read as its characters
  {
    name: 'AdapterHub leave_out "1"',
    method: 'Houlsby adapter',
    config: (json) => edited(json, [[['config', 'leave_out'], '"1"']]),
  },
];

describe('adapter config readers: the counterexamples fast-check found', () => {
  it.each(FOUND)('$name is refused with an Error naming the file', async ({ method, config }) => {
    const adapter = (await savedAdapters()).find(({ name }) => name === method)!;
    expect(await check(adapter, encode(config(adapter.json)))).toBe(false);
  });
});
