// Honest baselines for the classification tasks, computed from the same splits: the majority class,
// and a bag-of-words logistic regression (token counts of the same tokenizer, trained with tfjs).
import { IGNORE_INDEX, type Example } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import type { TaskSplits } from './tasks.js';

export interface BaselineScore {
  name: string;
  accuracy: number;
  /** Binary tasks: F1 of class 1. */
  f1?: number;
}

function flatLabels(examples: readonly Example[]): number[] {
  return examples.flatMap((e) => (Array.isArray(e.labels) ? e.labels.filter((l) => l !== IGNORE_INDEX) : [e.labels]));
}

/** Accuracy and (binary) F1 of predictions against labels. */
export function score(
  predictions: readonly number[],
  labels: readonly number[],
  binary: boolean,
): { accuracy: number; f1?: number } {
  let correct = 0;
  let tp = 0;
  let fp = 0;
  let fn = 0;
  predictions.forEach((p, i) => {
    const y = labels[i]!;
    if (p === y) correct += 1;
    if (p === 1 && y === 1) tp += 1;
    if (p === 1 && y !== 1) fp += 1;
    if (p !== 1 && y === 1) fn += 1;
  });
  const accuracy = correct / Math.max(1, labels.length);
  return binary ? { accuracy, f1: tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn) } : { accuracy };
}

/** Always the most frequent training label (per token for token classification). */
export function majorityBaseline(task: TaskSplits): BaselineScore {
  const counts = new Map<number, number>();
  for (const label of flatLabels(task.train)) counts.set(label, (counts.get(label) ?? 0) + 1);
  const majority = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]![0];
  const labels = flatLabels(task.test);
  return {
    name: 'majority class',
    ...score(
      labels.map(() => majority),
      labels,
      task.labels.length === 2,
    ),
  };
}

/**
 * Multinomial logistic regression on token counts (log(1 + count)) over the vocabulary seen in
 * training, full-batch gradient descent with Adam; sequence classification only.
 */
export function bagOfWordsBaseline(task: TaskSplits, epochs = 200): BaselineScore {
  if (task.task !== 'sequence-classification')
    throw new Error(`bag-of-words baseline: ${task.name} is not sequence classification`);
  const classes = task.labels.length;
  // one column per token the training split uses: a token it never shows has a zero feature in every
  // training row, so its weights never leave 0 and it adds nothing to a test row's logits. Columns
  // for the whole vocabulary made [1400, 30522] matrices on a BERT tokenizer (minilm), and the
  // bench's process peak RSS reached 4.2 GB before the first method trained.
  const columns = new Map<number, number>();
  for (const e of task.train) for (const id of e.inputIds) if (!columns.has(id)) columns.set(id, columns.size);
  const width = Math.max(1, columns.size);
  const features = (examples: readonly Example[]): tf.Tensor2D => {
    const values = new Float32Array(examples.length * width);
    examples.forEach((e, row) => {
      for (const id of e.inputIds) {
        const column = columns.get(id);
        if (column !== undefined) values[row * width + column]! += 1;
      }
    });
    return tf.tidy(() => tf.log1p(tf.tensor2d(values, [examples.length, width])));
  };
  const x = features(task.train);
  const y = tf.oneHot(
    tf.tensor1d(
      task.train.map((e) => e.labels as number),
      'int32',
    ),
    classes,
  );
  const weight = tf.variable(tf.zeros([width, classes]));
  const bias = tf.variable(tf.zeros([classes]));
  const optimizer = tf.train.adam(0.05);
  for (let epoch = 0; epoch < epochs; epoch++) {
    optimizer.minimize(() => {
      const logits = tf.add(tf.matMul(x, weight), bias);
      const loss = tf.mean(tf.sub(tf.logSumExp(logits, -1), tf.sum(tf.mul(logits, y), -1)));
      return tf.add(loss, tf.mul(1e-4, tf.sum(tf.square(weight)))) as tf.Scalar;
    });
  }
  const test = features(task.test);
  const predictions = tf.tidy(() => Array.from(tf.argMax(tf.add(tf.matMul(test, weight), bias), -1).dataSync()));
  tf.dispose([x, y, weight, bias, test]);
  optimizer.dispose();
  return {
    name: 'bag-of-words logistic regression',
    ...score(
      predictions,
      task.test.map((e) => e.labels as number),
      classes === 2,
    ),
  };
}
