import { peftTestConfig } from '../../vitest.shared';

export default peftTestConfig();
