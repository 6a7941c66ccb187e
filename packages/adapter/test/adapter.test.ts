import { BASE_ADAPTER, PeftModel, getPeftModel, memoryStore, parseSafetensors, train } from '@peft/core';
import { fixtureHosts, logits, maxDiff, patternExamples } from '@peft/test-helpers';
import { describe, expect, it } from 'vitest';

import { BottleneckConfig, HoulsbyConfig, PfeifferConfig } from '../src/index.js';

const host = fixtureHosts();
const input = { inputIds: [[3, 5, 7, 11, 13, 17]], tokenTypeIds: [[0, 0, 0, 1, 1, 1]] };

describe.each(['gpt2-tied', 'llama-gqa-untied', 'bert-sequence-classification'])('%s', (name) => {
  it('is the identity at init with a zero up projection (mam_adapter), and near it with the default init', async () => {
    const base = await host(name);
    const before = logits(base, input);
    const exact = getPeftModel(base, HoulsbyConfig({ initWeights: 'mam_adapter', reductionFactor: 4 }));
    expect(maxDiff(logits(exact, input), before)).toBe(0);
    exact.dispose();
    const near = getPeftModel(base, HoulsbyConfig({ reductionFactor: 4 }));
    const drift = maxDiff(logits(near, input), before);
    expect(drift).toBeGreaterThan(0);
    expect(drift).toBeLessThan(0.1); // documented: N(0, 0.02) weights move these fixtures' logits by at most ~0.06
    near.dispose();
  });

  it('Houlsby places two adapters per layer, Pfeiffer one; counts match the formula', async () => {
    const base = await host(name);
    const { numLayers, hiddenSize: d } = base.config;
    const m = Math.floor(d / 4);
    const perAdapter = d * m + m + m * d + d;
    const houlsby = getPeftModel(base, HoulsbyConfig({ reductionFactor: 4 }));
    expect(houlsby.parameterCount().trainable).toBe(2 * numLayers * perAdapter);
    houlsby.dispose();
    const pfeiffer = getPeftModel(base, PfeifferConfig({ reductionFactor: 4, leaveOut: [0] }));
    expect(pfeiffer.parameterCount().trainable).toBe((numLayers - 1) * perAdapter);
    pfeiffer.dispose();
  });

  it('trains only the adapters, saves in AdapterHub layout and reloads to the same outputs', async () => {
    // without the fixtures' dropout 0.1: 12 steps of a 17k-parameter model show no progress through it
    const base = await host(name, { dropout: false });
    const frozen = new Map([...base.parameters].map(([n, v]) => [n, v.dataSync().slice()]));
    const model = getPeftModel(base, PfeifferConfig({ reductionFactor: 2, initWeights: 'mam_adapter' }));
    const isBert = name.startsWith('bert');
    const data = patternExamples(12, { period: 9 }).map((example, i) =>
      isBert ? { ...example, labels: i % 3 } : example,
    );
    const result = await train(model, {
      data,
      task: isBert ? 'sequence-classification' : 'causal-lm',
      padTokenId: 0,
      batchSize: 4,
      epochs: 4,
      learningRate: 1e-2,
    });
    expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]!);
    for (const [parameter, variable] of base.parameters) {
      if (isBert && parameter.startsWith('classifier.')) continue; // SEQ_CLS heads are not trained here: no taskType
      expect(Array.from(variable.dataSync()), parameter).toEqual(Array.from(frozen.get(parameter)!));
    }
    const trained = logits(model, input);
    const store = memoryStore({}, 'mem:/adapter');
    await model.saveAdapter(store);
    const weights = parseSafetensors(store.files.get('adapter.safetensors')!);
    const expectedPrefix = isBert
      ? 'bert.encoder.layer.0.output.adapters.default.'
      : `${base.layerPaths[0]}.output_adapters.adapters.default.`;
    expect([...weights.entries.keys()]).toContain(`${expectedPrefix}adapter_down.0.weight`);
    expect(weights.entries.get(`${expectedPrefix}adapter_up.weight`)!.shape).toEqual([
      base.config.hiddenSize,
      base.config.hiddenSize / 2,
    ]);
    const config = JSON.parse(new TextDecoder().decode(store.files.get('adapter_config.json')));
    expect(config).toMatchObject({
      name: 'default',
      model_type: base.config.modelType,
      hidden_size: base.config.hiddenSize,
      config: {
        mh_adapter: false,
        output_adapter: true,
        non_linearity: 'relu',
        reduction_factor: 2,
        original_ln_before: true,
      },
    });
    model.dispose();
    const reloaded = await PeftModel.fromPretrained(base, store);
    expect(maxDiff(logits(reloaded, input), trained)).toBeLessThan(1e-6);
    reloaded.dispose();
  });
});

describe('bottleneck adapters', () => {
  it('serve a mixed batch: each sample as on its own adapter', async () => {
    const base = await host('gpt2-tied');
    const model = getPeftModel(base, HoulsbyConfig({ reductionFactor: 4, initSeed: 1 }), 'a');
    model.addAdapter(
      'b',
      PfeifferConfig({ reductionFactor: 2, initSeed: 2, initWeights: 'houlsby', lnBefore: true, lnAfter: true }),
    );
    const batch = {
      inputIds: [
        [3, 5, 7, 9],
        [4, 6, 8, 10],
        [11, 12, 13, 14],
      ],
    };
    const values = logits(model, { ...batch, adapterNames: ['b', BASE_ADAPTER, 'a'] });
    const single = (row: number, adapter: string | null): Float32Array => {
      if (adapter) model.setAdapter(adapter);
      const run = (): Float32Array => logits(model, { inputIds: [batch.inputIds[row]!] });
      return adapter ? run() : model.withAdapterDisabled(run);
    };
    const width = values.length / 3;
    expect(maxDiff(values.subarray(0, width), single(0, 'b'))).toBeLessThan(1e-5);
    expect(maxDiff(values.subarray(width, 2 * width), single(1, null))).toBeLessThan(1e-5);
    expect(maxDiff(values.subarray(2 * width), single(2, 'a'))).toBeLessThan(1e-5);
    model.dispose();
  });

  it('explicit bottleneck sizes and per-layer reduction factors', async () => {
    const base = await host('llama-gqa-untied');
    const sized = getPeftModel(base, PfeifferConfig({ bottleneckSize: 5 }));
    expect(sized.parameterCount().trainable).toBe(2 * (32 * 5 + 5 + 5 * 32 + 32));
    expect(
      (sized.config().toJson(base, 'default').config as { reduction_factor: number }).reduction_factor,
    ).toBeCloseTo(6.4);
    sized.dispose();
    const perLayer = getPeftModel(base, PfeifferConfig({ reductionFactor: { '1': 8, default: 16 } }));
    expect(perLayer.parameterCount().trainable).toBe(32 * 2 + 2 + 2 * 32 + 32 + (32 * 4 + 4 + 4 * 32 + 32));
    perLayer.dispose();
  });

  it.each([
    [{ mhAdapter: false, outputAdapter: false, nonLinearity: 'relu' }, 'mhAdapter and outputAdapter are both false'],
    [
      { mhAdapter: true, outputAdapter: true, nonLinearity: 'relu', reductionFactor: { '1': 4 } },
      'per-layer factors with a "default"',
    ],
    [
      { mhAdapter: true, outputAdapter: true, nonLinearity: 'relu', originalLnAfter: false },
      'BottleneckConfig.originalLnAfter: expected true',
    ],
  ])('refuses %o', (options, message) => {
    expect(() => new BottleneckConfig(options)).toThrow(message);
  });

  it('refuses AdapterHub features it does not implement, by name', () => {
    expect(() =>
      BottleneckConfig.fromJson(
        {
          config: {
            mh_adapter: true,
            output_adapter: true,
            reduction_factor: 16,
            non_linearity: 'relu',
            use_gating: true,
          },
        },
        'x.json',
      ),
    ).toThrow('x.json: "use_gating": true is not supported by @peft/adapter');
    expect(() => BottleneckConfig.fromJson({ config: { architecture: 'lora' } }, 'x.json')).toThrow(
      'x.json: an AdapterHub "lora" adapter, not a bottleneck adapter',
    );
  });

  it('an unknown activation names the field', async () => {
    const base = await host('gpt2-tied');
    expect(() => getPeftModel(base, PfeifferConfig({ nonLinearity: 'mish' }))).toThrow(
      'BottleneckConfig.nonLinearity: unsupported activation "mish"',
    );
  });
});
