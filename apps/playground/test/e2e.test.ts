// The playground end to end in a real browser: build the page with Vite, serve it, drive Debian's
// Chromium with playwright-core, train, download the adapter and load it in Node (its outputs must
// equal the page's), save it to IndexedDB and load it back after a reload. Skipped, loudly, where
// there is no Chromium.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { selectBackend } from '@peft/backend';
import { PeftModel } from '@peft/core';
import { loadPretrained, loadTokenizer } from '@peft/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  BROWN_GPT,
  CHROMIUM,
  PAGE_SETTINGS,
  PLAYGROUND_ROOT,
  chooseModelFolder,
  downloadAdapter,
  hasChromium,
  openPage,
  probeOnPage,
  saveReloadLoad,
  startDevServer,
  startSite,
  trainInNode,
  trainOnPage,
  type Site,
} from '../scripts/driver.js';
import { CHATML_TEMPLATE, parseTrainingData, probeLogits } from '../src/session.js';

const PROBE = 'the cat sat on the';
/** Screenshots, and each download with the page's probe for oracle/check_playground_download.py (not committed). */
const OUTPUT = path.join(PLAYGROUND_ROOT, 'test-output');

if (!hasChromium()) {
  const message = `no Chromium at ${CHROMIUM} (apt-get install chromium, or set PEFT_CHROMIUM)`;
  if (process.env.PEFT_REQUIRE_CHROMIUM === '1') throw new Error(`PEFT_REQUIRE_CHROMIUM=1, but there is ${message}`);
  console.warn(`!! playground e2e SKIPPED: ${message}`);
}

const maxAbsDiff = (a: readonly number[], b: readonly number[]): number => {
  expect(a).toHaveLength(b.length);
  return a.reduce((max, x, i) => Math.max(max, Math.abs(x - b[i]!)), 0);
};

const mean = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0) / values.length;

describe.skipIf(!hasChromium())('the playground in Chromium', () => {
  let site: Site;
  const scratch = mkdtempSync(path.join(tmpdir(), 'peft-playground-'));

  beforeAll(async () => {
    site = await startSite(path.join(scratch, 'site'));
    await selectBackend({ warnIfSlow: false }); // Node's side of the comparison: the fastest backend here
  });

  afterAll(async () => {
    await site?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('the dev server (pnpm playground) serves a page that trains on wasm, not a slower fallback', async () => {
    const dev = await startDevServer();
    try {
      const page = await openPage(site, 'auto', dev.url);
      const run = await trainOnPage(page, { method: 'lora', steps: 2, probeText: PROBE });
      expect(run.error).toBe('');
      expect(run.backend).toBe('wasm');
      expect(run.losses).toHaveLength(2);
      await page.close();
    } finally {
      await dev.close();
    }
  });

  it('chat JSON Lines: refused until a template is chosen; with ChatML the page counts the assistant tokens and trains', async () => {
    const chat = [
      ['where did the cat sit ?', 'on the mat .'],
      ['where did the dog sit ?', 'on the rug .'],
      ['where did the bird sit ?', 'on the tree .'],
      ['where did the fish swim ?', 'in the pond .'],
    ]
      .map(([question, answer]) =>
        JSON.stringify({
          messages: [
            { role: 'user', content: question },
            { role: 'assistant', content: answer },
          ],
        }),
      )
      .join('\n');
    const page = await openPage(site, 'auto');
    await page.fill('#block-size', String(PAGE_SETTINGS.blockSize));
    await page.fill('#data', chat);
    // brown-gpt has no chat template: none is applied unasked
    expect(
      await page.$$eval('#chat-template option', (options) => options.map((o) => (o as HTMLOptionElement).label)),
    ).toEqual(['none chosen (the model has no chat template)', 'ChatML (the model has no chat template of its own)']);
    expect(await page.getAttribute('#data-info', 'data-state')).toBe('failed');
    expect(await page.textContent('#data-info')).toMatch(
      /^JSONL line 1: chat rows \(\{"messages"\}\) are rendered with a chat template, and .* has none/,
    );
    await page.selectOption('#chat-template', 'chatml');
    const tokenizer = await loadTokenizer(BROWN_GPT);
    const data = parseTrainingData(chat, tokenizer, PAGE_SETTINGS.blockSize, { chatTemplate: CHATML_TEMPLATE });
    expect(await page.textContent('#data-info')).toBe(
      `chat JSON Lines with ChatML (the model has no chat template of its own): 4 examples, ${data.tokens} tokens, ` +
        `${data.lossTokens} assistant tokens carry the loss`,
    );
    const run = await trainOnPage(page, { method: 'lora', steps: 4, probeText: PROBE });
    expect(run.error).toBe('');
    expect(run.losses).toHaveLength(4);
    const node = await trainInNode('lora', run.text, 4, { chatTemplate: CHATML_TEMPLATE });
    expect(Math.abs(node.losses[0]! - run.losses[0]!)).toBeLessThan(1e-3);
    await page.close();
  });

  // auto is wasm in headless Chromium (its WebGL is SwiftShader, which auto skips); webgl is asked for
  it.each([
    ['auto', 'lora', 16],
    ['auto', 'prompt', 16],
    ['webgl', 'lora', 6],
  ])(
    "backend %s, %s: the loss falls; Node loads the download with the page's outputs; IndexedDB keeps it",
    async (backend, method, steps) => {
      const label = `${backend}-${method}`;
      const page = await openPage(site, backend);
      if (method === 'prompt') {
        // a folder that is not a whole model is refused, naming what is missing; the loaded model stays
        await page.setInputFiles(
          '#model-files',
          path.resolve(PLAYGROUND_ROOT, '../../packages/models/test/fixtures/gpt2-tied'),
        );
        await page.waitForFunction(() =>
          (document.getElementById('error')?.textContent ?? '').includes('has no tokenizer.json'),
        );
        expect(await page.textContent('#error')).toBe('the chosen folder "gpt2-tied" has no tokenizer.json');
        expect(await page.textContent('#model-info')).toMatch(/^brown-gpt: gpt2/);
        // a model folder chosen by the user replaces the served one; a second run replaces the first adapter
        expect(await chooseModelFolder(page, BROWN_GPT)).toMatch(
          /^brown-gpt \(your files\): gpt2, 4 layers × 256, vocabulary 4096, 4,240,896 parameters/,
        );
        await trainOnPage(page, { method: 'lora', steps: 2, probeText: PROBE });
      }
      const run = await trainOnPage(page, { method, steps, probeText: PROBE, screenshots: path.join(OUTPUT, label) });
      expect(run.error).toBe('');
      expect(run.backendText).toContain(`backend: ${run.backend} (`);
      if (backend !== 'auto') expect(run.backend).toBe(backend);
      expect(run.losses).toHaveLength(steps);
      expect(mean(run.losses.slice(-3))).toBeLessThan(mean(run.losses.slice(0, 3)));

      // the same run in Node: the same first loss (same data and initial adapter), the same last one
      // (same optimizer and learning rate)
      const node = await trainInNode(method, run.text, steps);
      expect(Math.abs(node.losses[0]! - run.losses[0]!)).toBeLessThan(1e-3);
      expect(Math.abs(node.losses.at(-1)! - run.losses.at(-1)!)).toBeLessThan(5e-3);
      console.log(
        `[playground e2e] ${method}, ${steps} steps of 4 x 48 tokens: Chromium ${run.backend} ${run.stepsPerSecond.toFixed(2)} steps/s, ` +
          `Node ${node.stepsPerSecond.toFixed(2)} steps/s; loss ${run.losses[0]!.toFixed(4)} -> ${run.losses.at(-1)!.toFixed(4)} ` +
          `(Node -> ${node.losses.at(-1)!.toFixed(4)}); ${run.backendText}`,
      );

      // the download: PEFT files that Node loads, giving the page's outputs
      const folder = path.join(OUTPUT, label, 'adapter');
      expect(await downloadAdapter(page, folder)).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
      const tokenizer = await loadTokenizer(BROWN_GPT);
      const probeIds = tokenizer.encode(PROBE, { addSpecialTokens: false }).ids;
      writeFileSync(
        path.join(OUTPUT, label, 'probe.json'),
        JSON.stringify({ input_ids: probeIds, last_logits: run.probe, backend: run.backend }),
      );
      const host = await loadPretrained(BROWN_GPT);
      await PeftModel.fromPretrained(host, folder);
      const difference = maxAbsDiff(probeLogits(host, tokenizer, PROBE), run.probe);
      host.dispose();
      console.log(
        `[playground e2e] ${label}: max |logit difference| page vs Node with the downloaded adapter ${difference.toExponential(2)}`,
      );
      expect(difference).toBeLessThan(2e-3);
      // and the adapter matters: the base model's outputs are far from the page's
      const base = await loadPretrained(BROWN_GPT);
      expect(maxAbsDiff(probeLogits(base, tokenizer, PROBE), run.probe)).toBeGreaterThan(
        100 * Math.max(difference, 1e-4),
      );
      base.dispose();

      // IndexedDB: saved, the page reloaded, loaded back: the same outputs
      await saveReloadLoad(page, label);
      expect(maxAbsDiff(await probeOnPage(page, PROBE), run.probe)).toBeLessThan(1e-5);
      await page.close();
    },
  );
});
