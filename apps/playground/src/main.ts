// The page: wires the DOM to session.ts. State lives here; everything that computes lives there.
import { selectBrowserBackend, type BrowserBackendName } from '@peft/backend/browser';
import {
  PeftModel,
  countParameters,
  indexedDbFolders,
  indexedDbStore,
  memoryStore,
  urlStore,
  type FileStore,
  type StepInfo,
  type TrainResult,
} from '@peft/core';
import { loadPretrained, loadTokenizer, type HfTokenizer, type TransformerHost } from '@peft/models';
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreadedSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';

import { LossChart } from './chart.js';
import {
  PLAYGROUND_METHODS,
  chatTemplateChoices,
  continueText,
  findMethod,
  parseTrainingData,
  probeLogits,
  trainSteps,
  type ChatTemplateChoice,
  type TrainingData,
} from './session.js';

const SAMPLE_TEXT = [
  'the cat sat on the mat and the dog sat on the rug .',
  'the cat sat on the rug and the dog sat on the mat .',
  'the bird sat on the tree and the fish swam in the pond .',
]
  .map((line) => `${line}\n`)
  .join('')
  .repeat(6);
const ADAPTER_FOLDER = 'adapters/';

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

const ui = {
  backend: element<HTMLParagraphElement>('backend'),
  modelInfo: element<HTMLParagraphElement>('model-info'),
  modelFiles: element<HTMLInputElement>('model-files'),
  method: element<HTMLSelectElement>('method'),
  learningRate: element<HTMLInputElement>('learning-rate'),
  steps: element<HTMLInputElement>('steps'),
  batchSize: element<HTMLInputElement>('batch-size'),
  blockSize: element<HTMLInputElement>('block-size'),
  data: element<HTMLTextAreaElement>('data'),
  chatTemplate: element<HTMLSelectElement>('chat-template'),
  dataInfo: element<HTMLParagraphElement>('data-info'),
  train: element<HTMLButtonElement>('train'),
  stop: element<HTMLButtonElement>('stop'),
  progress: element<HTMLProgressElement>('progress'),
  trainInfo: element<HTMLParagraphElement>('train-info'),
  prompt: element<HTMLInputElement>('prompt'),
  generate: element<HTMLButtonElement>('generate'),
  adapted: element<HTMLPreElement>('adapted'),
  base: element<HTMLPreElement>('base'),
  adapterName: element<HTMLInputElement>('adapter-name'),
  save: element<HTMLButtonElement>('save'),
  download: element<HTMLButtonElement>('download'),
  saved: element<HTMLSelectElement>('saved'),
  load: element<HTMLButtonElement>('load'),
  delete: element<HTMLButtonElement>('delete'),
  saveInfo: element<HTMLParagraphElement>('save-info'),
  error: element<HTMLParagraphElement>('error'),
};
const chart = new LossChart(element<HTMLCanvasElement>('chart'));

/** Object URLs of the last download, freed when the next one replaces them. */
let downloadUrls: string[] = [];

interface State {
  host: TransformerHost | null;
  tokenizer: HfTokenizer | null;
  /** The chat templates offered for the loaded model's tokenizer. */
  chatTemplates: ChatTemplateChoice[];
  model: PeftModel | null;
  busy: boolean;
  controller: AbortController | null;
}
const state: State = { host: null, tokenizer: null, chatTemplates: [], model: null, busy: false, controller: null };

/** What the end-to-end test reads: the backend, the last run, and a probe of the current model. */
const testHook = {
  backend: '',
  losses: [] as number[],
  stepsPerSecond: 0,
  tokensPerSecond: 0,
  probe: (text: string): number[] => probeLogits(requireHost(), requireTokenizer(), text),
};
(window as unknown as { playground: typeof testHook }).playground = testHook;

function requireHost(): TransformerHost {
  if (!state.host) throw new Error('no model is loaded');
  return state.host;
}

function requireTokenizer(): HfTokenizer {
  if (!state.tokenizer) throw new Error('no tokenizer is loaded');
  return state.tokenizer;
}

function showError(error: unknown): void {
  ui.error.textContent = error instanceof Error ? error.message : String(error);
  console.error(error);
}

function refreshButtons(): void {
  const ready = state.host !== null && !state.busy;
  ui.train.disabled = !ready;
  ui.stop.disabled = !state.busy || state.controller === null;
  ui.generate.disabled = !ready;
  ui.save.disabled = !ready || state.model === null;
  ui.download.disabled = !ready || state.model === null;
  ui.load.disabled = !ready || ui.saved.value === '';
  ui.delete.disabled = state.busy || ui.saved.value === '';
  ui.modelFiles.disabled = state.busy;
}

/** Runs one user action: buttons off while it runs, its error shown, never two at once. */
async function action(work: () => Promise<void>): Promise<void> {
  if (state.busy) return;
  state.busy = true;
  ui.error.textContent = '';
  refreshButtons();
  try {
    await work();
  } catch (error) {
    showError(error);
  } finally {
    state.busy = false;
    state.controller = null;
    refreshButtons();
  }
}

/** Lets the page paint between steps; a hidden tab gets no animation frames, so it only yields. */
const nextFrame = (): Promise<void> =>
  new Promise((resolve) => (document.hidden ? setTimeout(resolve, 0) : requestAnimationFrame(() => resolve())));

/** Takes the adapter off the host and frees its variables. */
function dropAdapter(): void {
  state.model?.dispose();
  state.model = null;
}

/** Loads a model; the one loaded before stays until the new one has loaded whole. */
async function loadModel(store: FileStore, label: string): Promise<void> {
  const previous = ui.modelInfo.textContent;
  const previousState = ui.modelInfo.dataset.state ?? '';
  ui.modelInfo.dataset.state = 'loading';
  ui.modelInfo.textContent = `loading ${label}…`;
  const started = performance.now();
  let host: TransformerHost | null = null;
  let tokenizer: HfTokenizer;
  try {
    host = await loadPretrained(store);
    tokenizer = await loadTokenizer(store);
  } catch (error) {
    host?.dispose();
    const kept = state.host !== null;
    ui.modelInfo.dataset.state = kept ? previousState : 'failed';
    ui.modelInfo.textContent = kept ? previous : `${label} could not be loaded`;
    throw new Error(
      `${label} could not be loaded${kept ? ' (the previous model stays)' : ''}: ${(error as Error).message}`,
    );
  }
  dropAdapter();
  state.host?.dispose();
  state.host = host;
  state.tokenizer = tokenizer;
  offerChatTemplates(tokenizer);
  const parameters = countParameters([...host.parameters.values()]);
  const { modelType, numLayers, hiddenSize, vocabSize } = host.config;
  ui.modelInfo.textContent =
    `${label}: ${modelType}, ${numLayers} layers × ${hiddenSize}, vocabulary ${vocabSize}, ` +
    `${parameters.toLocaleString('en-US')} parameters (loaded in ${((performance.now() - started) / 1000).toFixed(1)} s)`;
  ui.modelInfo.dataset.state = 'ready';
  updateDataInfo();
}

/**
 * The model's own chat template is preselected; a built-in one (ChatML) is offered by name for a
 * model without one, and used only once the user chooses it.
 */
function offerChatTemplates(tokenizer: HfTokenizer): void {
  state.chatTemplates = chatTemplateChoices(tokenizer);
  const own = tokenizer.chatTemplate !== null;
  ui.chatTemplate.replaceChildren(
    ...(own ? [] : [new Option('none chosen (the model has no chat template)', '')]),
    ...state.chatTemplates.map((choice) => new Option(choice.label, choice.name)),
  );
  ui.chatTemplate.value = own ? 'model' : '';
}

function chosenChatTemplate(): ChatTemplateChoice | undefined {
  return state.chatTemplates.find((choice) => choice.name === ui.chatTemplate.value);
}

function trainingData(): TrainingData {
  const chosen = chosenChatTemplate();
  return parseTrainingData(
    ui.data.value,
    requireTokenizer(),
    positiveInteger(ui.blockSize, 'block (tokens)', 2),
    // the model's own is the tokenizer's default: its errors then name the tokenizer's files
    chosen && chosen.name !== 'model' ? { chatTemplate: chosen.template } : {},
  );
}

function positiveInteger(input: HTMLInputElement, label: string, minimum = 1): number {
  const value = Number(input.value);
  if (!Number.isInteger(value) || value < minimum)
    throw new Error(`${label}: expected a whole number ≥ ${minimum}, got "${input.value}"`);
  return value;
}

function updateDataInfo(): void {
  if (!state.tokenizer) return;
  try {
    const data = trainingData();
    const examples = `${data.examples.length} examples, ${data.tokens} tokens`;
    if (data.format === 'chat') {
      const left =
        data.skipped > 0 ? `; ${data.skipped} conversation(s) left out: no assistant token within the block` : '';
      ui.dataInfo.textContent = `chat JSON Lines with ${chosenChatTemplate()?.label ?? 'the chat template'}: ${examples}, ${data.lossTokens} assistant tokens carry the loss${left}`;
    } else if (data.format === 'jsonl') {
      ui.dataInfo.textContent = `JSON Lines: ${examples}, ${data.lossTokens} carry the loss`;
    } else {
      ui.dataInfo.textContent = `plain text: ${examples}`;
    }
    ui.dataInfo.dataset.state = 'ready';
  } catch (error) {
    ui.dataInfo.textContent = (error as Error).message;
    ui.dataInfo.dataset.state = 'failed';
  }
}

async function runTraining(): Promise<void> {
  const host = requireHost();
  const method = findMethod(ui.method.value);
  const learningRate = Number(ui.learningRate.value);
  if (!(learningRate > 0)) throw new Error(`learning rate: expected a positive number, got "${ui.learningRate.value}"`);
  const steps = positiveInteger(ui.steps, 'steps');
  const batchSize = positiveInteger(ui.batchSize, 'batch size');
  const data = trainingData();
  dropAdapter(); // a new run starts from the base model
  ui.adapted.textContent = '';
  ui.base.textContent = '';
  state.model = method.make(host, 0);
  const trainableCount = countParameters([...state.model.trainableVariables().values()]);
  const share = (100 * trainableCount) / countParameters([...host.parameters.values()]);
  const trainable = `${trainableCount.toLocaleString('en-US')} trainable parameters (${share.toFixed(2)}% of the model)`;
  chart.reset();
  testHook.losses = [];
  ui.progress.value = 0;
  ui.progress.max = steps;
  ui.trainInfo.dataset.state = 'training';
  ui.trainInfo.textContent = `${method.label}: ${trainable}; starting…`;
  state.controller = new AbortController();
  refreshButtons();
  let seconds = 0;
  let tokens = 0;
  const onStep = async (info: StepInfo): Promise<void> => {
    seconds += info.seconds;
    tokens += info.tokens;
    testHook.losses.push(info.loss);
    chart.push(info.loss);
    ui.progress.value = info.step;
    ui.trainInfo.textContent =
      `${method.label}: step ${info.step}/${steps}, loss ${info.loss.toFixed(3)}, ` +
      `${(info.step / seconds).toFixed(2)} steps/s, ${Math.round(tokens / seconds)} tokens/s, ${info.tensors} tensors`;
    await nextFrame(); // let the page paint between steps
  };
  let result: TrainResult;
  try {
    result = await trainSteps(state.model, data, {
      steps,
      batchSize,
      learningRate,
      seed: 0,
      signal: state.controller.signal,
      onStep,
    });
  } catch (error) {
    ui.trainInfo.dataset.state = 'failed';
    ui.trainInfo.textContent = `${method.label}: training failed after ${testHook.losses.length} steps (the adapter keeps what it learned)`;
    throw error;
  }
  testHook.stepsPerSecond = result.steps / seconds;
  testHook.tokensPerSecond = tokens / seconds;
  const first = result.losses[0]!;
  const last = result.losses.at(-1)!;
  ui.trainInfo.textContent =
    `${method.label}: ${result.steps} steps (${result.stoppedBy}), loss ${first.toFixed(3)} → ${last.toFixed(3)}, ` +
    `${testHook.stepsPerSecond.toFixed(2)} steps/s, ${Math.round(testHook.tokensPerSecond)} tokens/s on ${testHook.backend}; ` +
    `${trainable}, ${method.virtualTokens} virtual tokens per input`;
  ui.trainInfo.dataset.state = 'done';
}

async function runGenerate(): Promise<void> {
  const host = requireHost();
  const tokenizer = requireTokenizer();
  const prompt = ui.prompt.value;
  ui.adapted.textContent = state.model ? continueText(host, tokenizer, prompt, 24) : '(train or load an adapter first)';
  const base = (): string => continueText(host, tokenizer, prompt, 24);
  ui.base.textContent = state.model ? state.model.withAdapterDisabled(base) : base();
}

function adapterFolder(): string {
  const name = ui.adapterName.value.trim();
  if (!/^[\w.-]+$/.test(name)) throw new Error(`name: letters, digits, "-", "_" and "." only; got "${name}"`);
  return `${ADAPTER_FOLDER}${name}`;
}

async function refreshSaved(select?: string): Promise<void> {
  const folders = (await indexedDbFolders()).filter((f) => f.startsWith(ADAPTER_FOLDER));
  ui.saved.replaceChildren(...folders.map((f) => new Option(f.slice(ADAPTER_FOLDER.length), f)));
  if (select && folders.includes(select)) ui.saved.value = select;
  refreshButtons();
}

async function runSave(): Promise<void> {
  if (!state.model) throw new Error('nothing to save: train or load an adapter first');
  const folder = adapterFolder();
  const files = memoryStore();
  await state.model.saveAdapter(files); // serialised first: a failure here leaves the saved copy alone
  const store = indexedDbStore(folder);
  await store.clear();
  for (const [name, bytes] of files.files) await store.write(name, bytes);
  ui.saveInfo.textContent = `saved in this browser as "${folder.slice(ADAPTER_FOLDER.length)}": ${(await store.list()).join(', ')}`;
  await refreshSaved(folder);
}

async function runDownload(): Promise<void> {
  if (!state.model) throw new Error('nothing to download: train or load an adapter first');
  const files = memoryStore();
  await state.model.saveAdapter(files);
  // bottleneck adapters write AdapterHub's files (adapter.safetensors), the others PEFT's
  const python = files.files.has('adapter.safetensors') ? 'AdapterHub' : 'PEFT';
  for (const url of downloadUrls) URL.revokeObjectURL(url);
  downloadUrls = [];
  const links = [...files.files].map(([name, bytes]) => {
    const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>]));
    downloadUrls.push(url);
    return Object.assign(document.createElement('a'), { href: url, download: name, textContent: name });
  });
  for (const link of links) {
    link.click();
    await new Promise((resolve) => setTimeout(resolve, 100)); // one download at a time
  }
  // a browser may hold back the second automatic download: the links stay for a click
  ui.saveInfo.replaceChildren(
    `downloaded ${links.map((l) => l.download).join(', ')} (into one folder; if your browser held one back, click: `,
    ...links.flatMap((link, i) => (i === 0 ? [link] : [', ', link])),
    python === 'AdapterHub'
      ? ") in AdapterHub's layout: load them with PeftModel.fromPretrained (Node) or AdapterHub's adapters (Python)."
      : '). Load them with PeftModel.fromPretrained (Node) or PeftModel.from_pretrained (Python).',
  );
}

async function runLoad(): Promise<void> {
  const host = requireHost();
  const folder = ui.saved.value;
  const name = folder.slice(ADAPTER_FOLDER.length);
  // the adapter in use is kept in memory until the saved one has loaded: a failed load restores it
  const backup = state.model ? memoryStore() : null;
  if (state.model && backup) await state.model.saveAdapter(backup);
  dropAdapter();
  try {
    state.model = await PeftModel.fromPretrained(host, indexedDbStore(folder));
  } catch (error) {
    if (backup) state.model = await PeftModel.fromPretrained(host, backup, { isTrainable: true });
    throw new Error(
      `"${name}" could not be loaded${backup ? ' (the previous adapter stays)' : ''}: ${(error as Error).message}`,
    );
  }
  chart.reset();
  testHook.losses = [];
  ui.progress.value = 0;
  ui.adapted.textContent = '';
  ui.base.textContent = '';
  ui.saveInfo.textContent = `loaded "${name}" from this browser`;
  ui.trainInfo.dataset.state = 'idle';
  ui.trainInfo.textContent = `adapter "${name}" loaded (not trained in this session)`;
}

async function runDelete(): Promise<void> {
  const folder = ui.saved.value;
  await indexedDbStore(folder).clear();
  ui.saveInfo.textContent = `deleted "${folder.slice(ADAPTER_FOLDER.length)}"`;
  await refreshSaved();
}

/** The chosen folder's top-level files (sub-folders such as checkpoints are not the model), read on demand. */
function fileListStore(files: FileList, location: string): FileStore {
  const byName = new Map<string, File>();
  for (const file of Array.from(files)) {
    if (file.webkitRelativePath.split('/').length <= 2) byName.set(file.name, file);
  }
  return {
    location,
    async read(name) {
      const file = byName.get(name);
      if (!file)
        throw new Error(
          `${location}/${name}: no such file among the chosen ones (${[...byName.keys()].join(', ') || 'none'})`,
        );
      return new Uint8Array(await file.arrayBuffer());
    },
    async has(name) {
      return byName.has(name);
    },
    async write(name) {
      throw new Error(`${location}/${name}: the chosen files are read-only`);
    },
  };
}

async function readChosenModel(files: FileList): Promise<void> {
  const folder = files[0]?.webkitRelativePath.split('/')[0] || 'model';
  const store = fileListStore(files, folder);
  for (const required of ['config.json', 'tokenizer.json']) {
    if (!(await store.has(required))) throw new Error(`the chosen folder "${folder}" has no ${required}`);
  }
  await loadModel(store, `${folder} (your files)`);
}

function wireEvents(): void {
  ui.method.addEventListener('change', () => {
    ui.learningRate.value = String(findMethod(ui.method.value).learningRate);
  });
  ui.data.addEventListener('input', updateDataInfo);
  ui.blockSize.addEventListener('input', updateDataInfo);
  ui.chatTemplate.addEventListener('change', updateDataInfo);
  ui.data.addEventListener('dragover', (event) => {
    event.preventDefault();
    ui.data.classList.add('drop');
  });
  ui.data.addEventListener('dragleave', () => ui.data.classList.remove('drop'));
  ui.data.addEventListener('drop', (event) => {
    event.preventDefault();
    ui.data.classList.remove('drop');
    const file = event.dataTransfer?.files[0];
    if (file) {
      file.text().then(
        (text) => {
          ui.data.value = text;
          updateDataInfo();
        },
        (error: unknown) => showError(new Error(`${file.name} could not be read: ${(error as Error).message}`)),
      );
    }
  });
  ui.modelFiles.addEventListener('change', () => {
    if (ui.modelFiles.files?.length) void action(() => readChosenModel(ui.modelFiles.files!));
  });
  ui.train.addEventListener('click', () => void action(runTraining));
  ui.stop.addEventListener('click', () => state.controller?.abort());
  ui.generate.addEventListener('click', () => void action(async () => runGenerate()));
  ui.save.addEventListener('click', () => void action(runSave));
  ui.download.addEventListener('click', () => void action(runDownload));
  ui.load.addEventListener('click', () => void action(runLoad));
  ui.delete.addEventListener('click', () => void action(runDelete));
  ui.saved.addEventListener('change', refreshButtons);
}

async function start(): Promise<void> {
  for (const method of PLAYGROUND_METHODS) ui.method.add(new Option(method.label, method.name));
  ui.learningRate.value = String(PLAYGROUND_METHODS[0]!.learningRate);
  ui.data.value = SAMPLE_TEXT;
  wireEvents();
  const requested = new URLSearchParams(location.search).get('backend') ?? 'auto';
  ui.modelInfo.textContent = 'waiting for a backend…';
  const backend = await selectBrowserBackend({
    backend: requested as BrowserBackendName | 'auto',
    wasmPaths: {
      'tfjs-backend-wasm.wasm': wasmPlain,
      'tfjs-backend-wasm-simd.wasm': wasmSimd,
      'tfjs-backend-wasm-threaded-simd.wasm': wasmThreadedSimd,
    },
  });
  testHook.backend = backend.name;
  const skipped = backend.unavailable.map((u) => `${u.name}: ${u.reason}`).join('; ');
  ui.backend.textContent = `backend: ${backend.name} (${backend.detail})${skipped ? `; not used: ${skipped}` : ''}`;
  ui.backend.dataset.state = 'ready';
  ui.backend.dataset.backend = backend.name;
  // private windows may have no IndexedDB: training still works, saving says why it cannot
  await refreshSaved().catch(
    (error: unknown) =>
      (ui.saveInfo.textContent = `saving in this browser is unavailable: ${(error as Error).message}`),
  );
  await action(() => loadModel(urlStore(new URL('models/brown-gpt/', location.href).toString()), 'brown-gpt'));
}

start().catch((error: unknown) => {
  ui.backend.dataset.state = 'failed';
  if (ui.modelInfo.dataset.state === 'loading') {
    ui.modelInfo.dataset.state = 'failed';
    ui.modelInfo.textContent = 'no model loaded (see the error below)';
  }
  showError(error);
});
