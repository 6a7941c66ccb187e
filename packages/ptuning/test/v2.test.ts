import { PeftModel, getPeftModel, memoryStore, parseSafetensors, train, type Example } from '@peft/core';
import { fixtureHosts, logits, maxDiff } from '@peft/test-helpers';
import { describe, expect, it } from 'vitest';

import { PTuningV2Config } from '../src/index.js';

const host = fixtureHosts();

describe('P-tuning v2', () => {
  it.each([
    ['sequence-classification', 'bert-sequence-classification'],
    ['token-classification', 'bert-token-classification'],
  ] as const)(
    '%s: deep prompts and the head train together; saved as PREFIX_TUNING plus the head',
    async (task, name) => {
      const base = await host(name);
      const headBefore = base.parameters.get('classifier.weight')!.dataSync().slice();
      const model = getPeftModel(base, new PTuningV2Config({ numVirtualTokens: 4, task }));
      expect([...model.trainableVariables().keys()].sort()).toEqual([
        'base_model.classifier.bias',
        'base_model.classifier.weight',
        'prompt_encoder.embedding.weight',
      ]);
      const data: Example[] = Array.from({ length: 16 }, (_, i) => {
        const ids = [2, 10 + (i % 4), 20 + (i % 3), 30 + (i % 5), 3];
        return {
          inputIds: ids,
          labels:
            task === 'sequence-classification' ? i % 3 : ids.map((_, t) => (t === 0 || t === 4 ? -100 : (i + t) % 5)),
        };
      });
      const result = await train(model, {
        data,
        validation: data,
        task,
        padTokenId: 0,
        batchSize: 4,
        epochs: 6,
        learningRate: 3e-2,
      });
      expect(result.losses.at(-1)!).toBeLessThan(result.losses[0]!);
      const trained = logits(model, { inputIds: [[2, 11, 22, 31, 3]] });
      const store = memoryStore();
      await model.saveAdapter(store);
      const config = JSON.parse(new TextDecoder().decode(store.files.get('adapter_config.json')));
      expect(config).toMatchObject({
        peft_type: 'PREFIX_TUNING',
        prefix_projection: false,
        task_type: task === 'sequence-classification' ? 'SEQ_CLS' : 'TOKEN_CLS',
        prefix_dropout: 0.1,
      });
      expect(config.modules_to_save).toContain('classifier');
      const weights = parseSafetensors(store.files.get('adapter_model.safetensors')!);
      expect([...weights.entries.keys()].sort()).toEqual([
        'base_model.classifier.bias',
        'base_model.classifier.weight',
        'prompt_embeddings',
      ]);
      // disabling the adapter gives back the original head too
      const disabledHead = model.withAdapterDisabled(() =>
        base.parameters.get('classifier.weight')!.dataSync().slice(),
      );
      expect(Array.from(disabledHead)).toEqual(Array.from(headBefore));
      model.dispose();
      expect(Array.from(base.parameters.get('classifier.weight')!.dataSync())).toEqual(Array.from(headBefore));
      const reloaded = await PeftModel.fromPretrained(base, store);
      expect(maxDiff(logits(reloaded, { inputIds: [[2, 11, 22, 31, 3]] }), trained)).toBeLessThan(1e-6);
      reloaded.dispose();
    },
  );

  it('refuses an unknown task', () => {
    expect(() => new PTuningV2Config({ numVirtualTokens: 2, task: 'qa' as never })).toThrow(
      'PTuningV2Config.task: expected one of',
    );
  });
});
