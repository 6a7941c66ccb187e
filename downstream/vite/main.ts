// A browser page as a user's Vite project would write it: the browser entry of @peft/backend, a
// model fetched from the page's own origin, LoRA attached and a short training run.
import { selectBrowserBackend } from '@peft/backend/browser';
import { causalLmExample, getPeftModel, train, urlStore } from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { loadPretrained, loadTokenizer } from '@peft/models';

const status = document.querySelector('#status')!;
const backend = await selectBrowserBackend();
const store = urlStore(new URL('models/brown-gpt/', location.href).toString());
const tokenizer = await loadTokenizer(store);
const model = getPeftModel(await loadPretrained(store), new LoraConfig({ r: 8, loraAlpha: 16 }));
const data = ['The jury said the election was conducted well.'].map((text) => causalLmExample(tokenizer, text));
const result = await train(model, {
  data,
  task: 'causal-lm',
  padTokenId: 0,
  batchSize: 1,
  maxSteps: 2,
  learningRate: 1e-3,
});
status.textContent = `${backend.name}: ${result.steps} steps`;
