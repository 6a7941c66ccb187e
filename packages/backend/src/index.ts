export {
  BACKEND_ENV,
  BACKEND_NAMES,
  availableBackends,
  loadBackend,
  parseBackendRequest,
  selectBackend,
  slowBackendWarning,
} from './select-backend.js';
export type { BackendName, BackendRequest, BackendSelection, SelectBackendOptions } from './select-backend.js';
export { cpuDescription } from './cpu.js';
export { measureMatMul } from './measure.js';
export type { MatMulMeasurement } from './measure.js';
export { formatDoctorReport, hugePageAdvice, runDoctor } from './doctor.js';
export type { BackendReport, DoctorOptions, DoctorReport, HugePageFacts } from './doctor.js';
export { detectPackageManager, fixAdvice, inspectNativeSetup, nativeFixCommand } from './native-setup.js';
export type { NativeSetup, PackageManager, ProvisioningStatus } from './native-setup.js';
