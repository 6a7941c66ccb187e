// Every test file starts on the backend PEFT_BACKEND names, `cpu` by default: always there and
// deterministic. Parity tests repeat themselves on every available backend (availableBackends()).
import { selectBackend } from '@peft/backend';

await selectBackend({ backend: process.env.PEFT_BACKEND ? undefined : 'cpu', warnIfSlow: false });
