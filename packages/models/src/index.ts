export { CONFIG_FILE, SUPPORTED_MODEL_TYPES, hostFromCheckpoint, loadPretrained } from './load-pretrained.js';
export type { LoadOptions } from './load-pretrained.js';
export { GPT2_HEADS, Gpt2Model, parseGpt2Config } from './gpt2.js';
export type { Gpt2Config, Gpt2Head } from './gpt2.js';
export { BERT_TASKS, BertModel, ROBERTA_TASKS, parseBertConfig } from './bert.js';
export type { BertConfig, BertTask } from './bert.js';
export { LlamaModel, parseLlamaConfig, rotaryInverseFrequencies } from './llama.js';
export type { LlamaConfig, RopeConfig } from './llama.js';
export { Phi3Model, parsePhi3Config } from './phi3.js';
export type { Phi3Config, Phi3Rope } from './phi3.js';
export { Gemma2Model, parseGemma2Config, parseGemma3TextConfig } from './gemma2.js';
export type { Gemma2Config } from './gemma2.js';
export { NO_DROPOUT, TransformerHost } from './transformer-host.js';
export type { DropoutRates, PretrainedOrigin } from './transformer-host.js';
export {
  DEFAULT_MAX_SHARD_SIZE,
  GENERATION_CONFIG_FILE,
  TOKENIZER_FILES,
  parseShardSize,
  savePretrained,
} from './save-pretrained.js';
export type { SavableModel, SaveDtype, SavePretrainedOptions, SavedPretrained } from './save-pretrained.js';
export { ConfigReader } from './config.js';
export { generate } from './generate.js';
export type { GenerateOptions, GenerateResult } from './generate.js';
export { CHAT_TEMPLATE_FILE, HfTokenizer, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, loadTokenizer } from './tokenizer.js';
export { ChatTemplate, hasGenerationMarkers, parseChatMessages } from './chat-template.js';
export type { ChatMessage, ChatTemplateOptions, RenderedChat } from './chat-template.js';
export { chatExample } from './chat-example.js';
export type { ChatExampleOptions } from './chat-example.js';
export type { BatchEncodeOptions, BatchEncoding, EncodeOptions, Encoded } from './tokenizer.js';

export { GPT2_SMALL, randomGpt2, randomGpt2Store, randomModel } from './random.js';
export type { Gpt2Shape } from './random.js';
