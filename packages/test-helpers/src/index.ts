export { patternExamples } from './data.js';
export { maxDiff, maxDiffAtRealTokens } from './diff.js';
export { MODEL_FIXTURES, fixtureHosts } from './hosts.js';
export { logits, readLogits } from './logits.js';
export type { Forwarding } from './logits.js';
export { forwardInput, greedyOptions, parityReport, readJsonFixture, readSafetensorsFixture } from './oracle.js';
export type { OracleGreedy, OracleInput } from './oracle.js';
