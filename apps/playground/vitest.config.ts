import { peftTestConfig } from '../../vitest.shared';

// The end-to-end test builds the page and trains in Chromium: minutes, not seconds (several when the
// other packages' tests share the cores).
export default peftTestConfig({ testTimeout: 480_000, hookTimeout: 180_000 });
