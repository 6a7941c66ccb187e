// What adapters cost at inference: forward latency (batch 1, sequence 128) and generation ms/token
// of a GPT-2-small-shaped model (random weights) with Houlsby and Pfeiffer adapters, against the
// base model and LoRA (merged and unmerged) at about equal trainable parameters (LoRA r=8 on c_attn:
// 294,912). Measured in interleaved rounds so that machine drift falls on all alike. A benchmark.
//
//   pnpm bench:adapter
import { HoulsbyConfig, PfeifferConfig } from '@peft/adapter';
import { selectBackend } from '@peft/backend';
import { getPeftModel, type PeftModel } from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { GPT2_SMALL, generate, randomGpt2 } from '@peft/models';

const SEQUENCE = 128;
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const backend = await selectBackend();
  const host = randomGpt2(GPT2_SMALL);
  const lora = getPeftModel(
    host,
    new LoraConfig({ r: 8, loraAlpha: 16, targetModules: ['c_attn'], initLoraWeights: false }),
  );
  // Houlsby: 24 adapters of 2·768·m + m + 768 -> m = 8 (313,536); Pfeiffer: 12 adapters -> m = 16 (304,320)
  const bottleneck = getPeftModel(host, HoulsbyConfig({ bottleneckSize: 8 }), 'houlsby');
  bottleneck.addAdapter('pfeiffer', PfeifferConfig({ bottleneckSize: 16 }));
  const count = (model: PeftModel, name?: string): number => {
    if (name) model.setAdapter(name);
    return model.parameterCount().trainable;
  };
  const trainable = {
    lora: count(lora),
    houlsby: count(bottleneck, 'houlsby'),
    pfeiffer: count(bottleneck, 'pfeiffer'),
  };

  const ids = [Array.from({ length: SEQUENCE }, (_, i) => (i * 7919) % GPT2_SMALL.vocab)];
  const forward = (): number => {
    const start = performance.now();
    const { logits } = host.forward({ inputIds: ids });
    logits.dataSync();
    logits.dispose();
    return performance.now() - start;
  };
  const perToken = (): number => {
    const start = performance.now();
    generate(host, { inputIds: [ids[0]!.slice(0, 16)], maxNewTokens: 32 });
    return (performance.now() - start) / 32;
  };
  const configurations: Record<string, (measure: () => number) => number> = {
    base: (m) => lora.withAdapterDisabled(() => bottleneck.withAdapterDisabled(m)),
    'LoRA r=8, merged': (m) => {
      lora.merge();
      try {
        return bottleneck.withAdapterDisabled(m);
      } finally {
        lora.unmerge();
      }
    },
    'LoRA r=8, unmerged': (m) => bottleneck.withAdapterDisabled(m),
    'Houlsby m=8': (m) => {
      bottleneck.setAdapter('houlsby');
      return lora.withAdapterDisabled(m);
    },
    'Pfeiffer m=16': (m) => {
      bottleneck.setAdapter('pfeiffer');
      return lora.withAdapterDisabled(m);
    },
  };
  const results: Record<string, { forward: number[]; token: number[] }> = {};
  for (const name of Object.keys(configurations)) results[name] = { forward: [], token: [] };
  for (let round = 0; round < 15; round++) {
    for (const [name, run] of Object.entries(configurations)) {
      const f = run(forward);
      if (round >= 2) results[name]!.forward.push(f);
      if (round >= 2 && round < 7) results[name]!.token.push(run(perToken));
    }
  }
  const base = results.base!;
  console.log(
    `GPT-2 small shape (124M, random weights) on ${backend.name}; forward batch 1 x ${SEQUENCE}; generation prompt 16, 32 new tokens with cache`,
  );
  console.log(
    `  trainable parameters: LoRA ${trainable.lora.toLocaleString('en-US')}, Houlsby ${trainable.houlsby.toLocaleString('en-US')}, Pfeiffer ${trainable.pfeiffer.toLocaleString('en-US')}`,
  );
  console.log(
    `  ${'configuration'.padEnd(22)}${'forward ms'.padStart(12)}${'vs base'.padStart(10)}${'ms/token'.padStart(12)}${'vs base'.padStart(10)}`,
  );
  for (const [name, { forward: f, token: t }] of Object.entries(results)) {
    const overhead = (value: number, reference: number): string =>
      `${value >= reference ? '+' : ''}${((100 * (value - reference)) / reference).toFixed(1)}%`;
    console.log(
      `  ${name.padEnd(22)}${median(f).toFixed(1).padStart(12)}${overhead(median(f), median(base.forward)).padStart(10)}` +
        `${median(t).toFixed(2).padStart(12)}${overhead(median(t), median(base.token)).padStart(10)}`,
    );
  }
}

await main();
