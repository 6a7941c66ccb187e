export { baseTag, brownDirectory, detokenize, readBrown, splitBrown } from './data/brown.js';
export type { BrownFile, BrownSplit, TaggedWord } from './data/brown.js';
export { bytesToUnicode, tokenizerJson, trainByteLevelBpe } from './tokenizer/train-bpe.js';
export type { BpeTrainingOptions } from './tokenizer/train-bpe.js';
export { emailText, htmlToText, readEmails, spamAssassinDirectory } from './data/email.js';
export type { Email } from './data/email.js';
export {
  GENRE_CLASSES,
  GENRE_GROUPS,
  UNIVERSAL_TAGS,
  describeTask,
  emailLmTask,
  genreTask,
  jsonlTask,
  posTask,
  spamTask,
  universalTag,
} from './tasks/tasks.js';
export type { TaskOptions, TaskSplits } from './tasks/tasks.js';
export { bagOfWordsBaseline, majorityBaseline, score } from './tasks/baselines.js';
export type { BaselineScore } from './tasks/baselines.js';
export { METHODS, VIRTUAL_TOKENS } from './methods.js';
export type { MethodSpec } from './methods.js';
export { parseBudget, parseLearningRates } from './cli.js';
export { RESULTS_SCHEMA, runBench, summarize } from './run.js';
export type { BenchOptions, BenchResults, MethodSummary, ProgressEvent, RunResult } from './run.js';
export { consoleTable, htmlReport, markdownReport, writeReports } from './report.js';
