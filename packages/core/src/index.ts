export { preview } from './preview.js';
export { releasableBytes, releaseBytes } from './buffers.js';
export { describeFile, memoryStore, readJson, readText, urlStore, writeJson, writeTogether } from './files.js';
export type { FileStore, RangeFile } from './files.js';
export { DEFAULT_INDEXEDDB_DATABASE, indexedDbFolders, indexedDbStore } from './indexeddb.js';
export type { IndexedDbOptions, IndexedDbStore } from './indexeddb.js';
export { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from './float16.js';
export {
  MAX_HEADER_BYTES,
  SAFETENSORS_DTYPES,
  openSafetensors,
  parseSafetensors,
  serializeSafetensors,
} from './safetensors.js';
export type {
  SafetensorsDtype,
  SafetensorsFile,
  SafetensorsFloatDtype,
  StoredTensor,
  TensorData,
  TensorEntry,
  TensorToWrite,
} from './safetensors.js';
export { SAFETENSORS_FILE, SAFETENSORS_INDEX_FILE, checkpointFromFiles, readCheckpoint } from './checkpoint.js';
export type { Checkpoint } from './checkpoint.js';
export { countParameters, formatParameterCount } from './parameters.js';
export type { ParameterCount, Shaped } from './parameters.js';
export { HostHooks, HostLinear, hostOf } from './host.js';
export type {
  Disposer,
  ForwardContext,
  HostConfig,
  HostForwardInput,
  HostForwardOutput,
  LmHead,
  HostSource,
  InputEmbeddingHook,
  KeyValueCache,
  KeyValuePrefix,
  KeyValuePrefixProvider,
  LinearDelta,
  LinearDeltaGraph,
  PeftHost,
  SublayerHook,
  SublayerPoint,
  SublayerSurroundings,
} from './host.js';
export { DROPOUT_MASK_KERNEL, SeededRandom, deriveSeed, seededDropout, seededNormal } from './random.js';
export { learningRateAt } from './schedules.js';
export type { ScheduleName, ScheduleOptions } from './schedules.js';
export { checkpoint, recordingGradients, variableGradients } from './gradients.js';
export {
  ADAMW_KERNEL,
  ADAMW_MOMENT_KERNEL,
  ADAMW_READ_KERNEL,
  AdamW,
  FUSED_ADAMW_MIN_ELEMENTS,
  Sgd,
} from './optimizers.js';
export type { AdamWKernelAttrs, AdamWOptions, Optimizer, OptimizerState, SgdOptions } from './optimizers.js';
export {
  IGNORE_INDEX,
  causalLmLoss,
  SOFTMAX_CROSS_ENTROPY_KERNEL,
  fusedCausalLmLoss,
  maskedCrossEntropy,
  sequenceClassificationLoss,
  tokenClassificationLoss,
  maskedVerbalizerLogits,
  verbalizerLogits,
} from './losses.js';
export {
  arrayDataset,
  batchExamples,
  causalLmExample,
  classificationExample,
  collate,
  collect,
  csvDataset,
  jsonlDataset,
  mapDataset,
  parseCsv,
  parseJsonl,
  splitDataset,
  tokenClassificationExample,
} from './data.js';
export type {
  Batch,
  BatchingOptions,
  CausalLmExampleOptions,
  CollateOptions,
  Dataset,
  Example,
  ExampleTokenizer,
  SplitOptions,
} from './data.js';
export { epochBatching, evaluate, train } from './train.js';
export type { EvalResult, StepInfo, TaskName, TrainOptions, TrainResult, TrainableModel } from './train.js';
export {
  DEFAULT_KEEP_LAST,
  LATEST_CHECKPOINT_FILE,
  TRAINING_LOCK_FILE,
  loadTrainingCheckpoint,
  lockCheckpointFolder,
  saveTrainingCheckpoint,
} from './training-checkpoint.js';
export type { SaveCheckpointOptions, TrainerState, TrainingLock } from './training-checkpoint.js';
export { fullFineTuning, headOnly } from './baselines.js';
export { resolveStore } from './source.js';
export type { StoreSource } from './source.js';
export {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  BASE_ADAPTER,
  PeftModel,
  STATE_DICT_PREFIX,
  expectTensorShape,
  getPeftModel,
  registerPeftMethod,
} from './peft-model.js';
export type { AdapterTuner, LoadedAdapter, PeftConfig, PeftForwardInput, PeftMethod } from './peft-model.js';
export {
  ACTIVATIONS,
  GELU_TANH_KERNEL,
  HEAD_PRODUCT_KERNEL,
  LAYER_NORM_KERNEL,
  RMS_NORM_KERNEL,
  SWIGLU_KERNEL,
  activation,
  addReleasing,
  gatedActivation,
  headProduct,
  layerNorm,
  reshapeReleasing,
  rmsNorm,
} from './nn.js';
export { ownVariable } from './variables.js';
export { GRAPH_KERNEL, GraphBuilder, graphKernelAvailable, runGraph } from './graph.js';
export type { GraphAttr, GraphDtype, GraphNode, GraphSpec } from './graph.js';
export { PrefixConfig, PrefixTuner, prefixMethod, prefixShape } from './prefix.js';
export type { PrefixOptions } from './prefix.js';
export {
  PROMPT_EMBEDDINGS,
  PromptTable,
  PromptTuner,
  promptFromTokens,
  promptLearningJson,
  promptMethod,
} from './prompt.js';
export type { PromptPlacement, PromptSource } from './prompt.js';
