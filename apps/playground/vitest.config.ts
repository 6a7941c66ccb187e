import { peftTestConfig } from '../../vitest.shared';

// The end-to-end test builds the page and trains in Chromium: minutes, not seconds.
export default peftTestConfig({ testTimeout: 240_000, hookTimeout: 180_000 });
