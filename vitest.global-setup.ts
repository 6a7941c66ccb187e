// Runs once per `vitest run`: says which backend the tests use and which parity tests repeat on.
import { availableBackends } from '@peft/backend';

export default async function announceBackends(): Promise<void> {
  const main = process.env.PEFT_BACKEND ?? 'cpu';
  const available = await availableBackends();
  console.log(
    `[@peft tests] backend: ${main}${process.env.PEFT_BACKEND ? ' (PEFT_BACKEND)' : ' (default)'}; ` +
      `available here for parity tests: ${available.join(', ')}`,
  );
}
