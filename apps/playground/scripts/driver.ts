// Drives the built playground in Debian's Chromium (playwright-core): shared by the end-to-end test
// and the browser-vs-Node comparison. Errors say what the page showed.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadPretrained, loadTokenizer } from '@peft/models';
import { chromium, type Browser, type Download, type Page } from 'playwright-core';
import { build, createServer, preview, type PreviewServer } from 'vite';

import { findMethod, parseTrainingData, trainSteps, type TrainingDataOptions } from '../src/session.js';

export const PLAYGROUND_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BROWN_GPT = path.resolve(PLAYGROUND_ROOT, '../bench/models/brown-gpt');
export const CHROMIUM = process.env.PEFT_CHROMIUM ?? '/usr/bin/chromium';
/** What the driver sets on the page and the Node side repeats (the seed is the page's). */
export const PAGE_SETTINGS = { batchSize: 4, blockSize: 48, seed: 0 } as const;
// FACTS.md: without the background-networking flags Chromium floods the closed network.
const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const hasChromium = (): boolean => existsSync(CHROMIUM);

export interface Site {
  url: string;
  browser: Browser;
  close(): Promise<void>;
}

/** Builds the page into `outDir`, serves it on localhost and starts headless Chromium. */
export async function startSite(outDir: string): Promise<Site> {
  if (!hasChromium()) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium, or set PEFT_CHROMIUM`);
  const configFile = path.join(PLAYGROUND_ROOT, 'vite.config.ts');
  await build({ root: PLAYGROUND_ROOT, configFile, logLevel: 'warn', build: { outDir, emptyOutDir: true } });
  const server: PreviewServer = await preview({
    root: PLAYGROUND_ROOT,
    configFile,
    logLevel: 'warn',
    build: { outDir },
    preview: { host: '127.0.0.1', port: 4300 + Math.floor(Math.random() * 500) },
  });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  return {
    url: server.resolvedUrls!.local[0]!,
    browser,
    async close() {
      await browser.close();
      await server.close();
    },
  };
}

/** Vite's dev server on the page (what `pnpm playground` runs): its URL and how to stop it. */
export async function startDevServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server = await createServer({
    root: PLAYGROUND_ROOT,
    configFile: path.join(PLAYGROUND_ROOT, 'vite.config.ts'),
    logLevel: 'warn',
    // a port Chromium will load: 4900-5399 held 5060 and 5061 (SIP), which it refuses
    // (net::ERR_UNSAFE_PORT, seen in CI); its next restricted port is 6000
    server: { host: '127.0.0.1', port: 5400 + Math.floor(Math.random() * 500) },
  });
  await server.listen();
  return { url: server.resolvedUrls!.local[0]!, close: () => server.close() };
}

interface Hook {
  backend: string;
  losses: number[];
  stepsPerSecond: number;
  probe(text: string): number[];
}

async function pageError(page: Page): Promise<string> {
  return (await page.textContent('#error')) ?? '';
}

/** Waits for `selector`; on a timeout the error carries the page's own error line. */
async function waitOrExplain(page: Page, selector: string, timeout: number): Promise<void> {
  try {
    await page.waitForSelector(selector, { timeout });
  } catch (error) {
    throw new Error(
      `${selector} did not appear (${(error as Error).message.split('\n')[0]}); the page says: ${(await pageError(page)) || 'nothing'}`,
    );
  }
}

/** The longest a click or a wait on the page may take, unless the call says otherwise. */
const PAGE_ACTION_TIMEOUT_MS = 150_000;

export async function openPage(site: Site, backend: string, url = site.url): Promise<Page> {
  const page = await site.browser.newPage({ acceptDownloads: true, viewport: { width: 1100, height: 900 } });
  page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
  // Playwright's 30 s default for clicks and waits is too short for a page compiling WebGL shaders on
  // SwiftShader while the test suites of other packages share the 2 cores (seen in CI: #train not
  // clickable within 30 s; alone the same test passes in 52 s)
  page.setDefaultTimeout(PAGE_ACTION_TIMEOUT_MS);
  await page.goto(`${url}?backend=${backend}`);
  await waitOrExplain(page, '#model-info[data-state=ready]', 60_000);
  return page;
}

/** Gives the page a model folder through its file input, as a user choosing a folder does. */
export async function chooseModelFolder(page: Page, folder: string): Promise<string> {
  await page.setInputFiles('#model-files', folder);
  await page.waitForFunction(
    () => (document.getElementById('model-info')?.textContent ?? '').includes('(your files)'),
    undefined,
    { timeout: 60_000 },
  );
  await waitOrExplain(page, '#model-info[data-state=ready]', 60_000);
  return (await page.textContent('#model-info')) ?? '';
}

export interface PageRun {
  backend: string;
  /** The page's backend line, as the user sees it. */
  backendText: string;
  losses: number[];
  stepsPerSecond: number;
  /** Last-position logits of `probeText` with the trained adapter. */
  probe: number[];
  /** The training data as the page holds it. */
  text: string;
  error: string;
}

/** Trains on the page; with `screenshots`, saves `<prefix>-training.png` and `<prefix>-trained.png`. */
export async function trainOnPage(
  page: Page,
  options: { method: string; steps: number; probeText: string; screenshots?: string },
): Promise<PageRun> {
  await page.selectOption('#method', options.method);
  await page.fill('#steps', String(options.steps));
  await page.fill('#batch-size', String(PAGE_SETTINGS.batchSize));
  await page.fill('#block-size', String(PAGE_SETTINGS.blockSize));
  await page.click('#train');
  if (options.screenshots) {
    mkdirSync(path.dirname(options.screenshots), { recursive: true });
    await page.waitForFunction(
      () => (window as unknown as { playground: Hook }).playground.losses.length >= 4,
      undefined,
      { timeout: 120_000 },
    );
    await page.screenshot({ path: `${options.screenshots}-training.png`, fullPage: true });
  }
  await waitOrExplain(page, '#train-info[data-state=done]', 300_000);
  await page.click('#generate');
  await page.waitForFunction(() => (document.getElementById('adapted')?.textContent ?? '') !== '');
  if (options.screenshots) await page.screenshot({ path: `${options.screenshots}-trained.png`, fullPage: true });
  const run = await page.evaluate((probeText) => {
    const hook = (window as unknown as { playground: Hook }).playground;
    return {
      backend: hook.backend,
      backendText: document.getElementById('backend')!.textContent!,
      losses: hook.losses,
      stepsPerSecond: hook.stepsPerSecond,
      probe: hook.probe(probeText),
    };
  }, options.probeText);
  return { ...run, text: await page.inputValue('#data'), error: await pageError(page) };
}

export async function probeOnPage(page: Page, text: string): Promise<number[]> {
  return page.evaluate((probeText) => (window as unknown as { playground: Hook }).playground.probe(probeText), text);
}

/** Clicks Download and saves what the page offers into `folder`; returns the file names. */
export async function downloadAdapter(page: Page, folder: string): Promise<string[]> {
  const downloads: Download[] = [];
  page.on('download', (download) => downloads.push(download));
  await page.click('#download');
  await page.waitForFunction(() => (document.getElementById('save-info')?.textContent ?? '').startsWith('downloaded'));
  mkdirSync(folder, { recursive: true });
  for (const download of downloads) await download.saveAs(path.join(folder, download.suggestedFilename()));
  return downloads.map((d) => d.suggestedFilename()).sort();
}

/** Saves in the page's IndexedDB, reloads the page and loads the adapter back. */
export async function saveReloadLoad(page: Page, name: string): Promise<void> {
  await page.fill('#adapter-name', name);
  await page.click('#save');
  await page.waitForFunction(() => (document.getElementById('save-info')?.textContent ?? '').startsWith('saved'));
  await page.reload();
  await waitOrExplain(page, '#model-info[data-state=ready]', 60_000);
  await page.selectOption('#saved', `adapters/${name}`);
  await page.click('#load');
  await page.waitForFunction(() => (document.getElementById('save-info')?.textContent ?? '').startsWith('loaded'));
}

/**
 * The page's run repeated in Node on tfjs's current backend: same method, data, seed and steps (and
 * the chat template the page was given for chat rows).
 */
export async function trainInNode(
  method: string,
  text: string,
  steps: number,
  dataOptions: TrainingDataOptions = {},
): Promise<{ losses: number[]; stepsPerSecond: number }> {
  const host = await loadPretrained(BROWN_GPT);
  const tokenizer = await loadTokenizer(BROWN_GPT);
  const spec = findMethod(method);
  const model = spec.make(host, PAGE_SETTINGS.seed);
  let seconds = 0;
  const result = await trainSteps(model, parseTrainingData(text, tokenizer, PAGE_SETTINGS.blockSize, dataOptions), {
    steps,
    batchSize: PAGE_SETTINGS.batchSize,
    learningRate: spec.learningRate,
    seed: PAGE_SETTINGS.seed,
    onStep: (info) => {
      seconds += info.seconds;
    },
  });
  host.dispose();
  return { losses: result.losses, stepsPerSecond: result.steps / seconds };
}
