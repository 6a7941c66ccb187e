// The two baselines every method is compared with: all weights trainable, or the task head alone.
import type * as tf from '@tensorflow/tfjs-core';

import type { PeftHost } from './host.js';
import type { TrainableModel } from './train.js';

/** Every weight of the host trains (full fine-tuning). */
export function fullFineTuning(host: PeftHost): TrainableModel {
  return { host, trainableVariables: () => host.parameters };
}

/** Only the task head trains (e.g. BERT's `classifier`, an untied `lm_head`). */
export function headOnly(host: PeftHost): TrainableModel {
  const variables = new Map<string, tf.Variable>();
  for (const [name, variable] of host.parameters) {
    if (host.headModules.some((head) => name.startsWith(`${head}.`))) variables.set(name, variable);
  }
  if (variables.size === 0) {
    throw new Error(
      `headOnly: the host has no weights of its own under ${host.headModules.join(', ')} (a head tied to the embeddings?)`,
    );
  }
  return { host, trainableVariables: () => variables };
}
