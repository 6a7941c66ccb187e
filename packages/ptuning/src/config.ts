// PTuningConfig: P-tuning v1 (Liu et al., 2021) with peft's names (P_TUNING): the prompt
// encoder's shape, and the paper's template placement as an extra key peft ignores.
import { preview, promptLearningJson, type PeftConfig, type PeftHost } from '@peft/core';

export type EncoderType = 'MLP' | 'LSTM';

export interface PTuningConfigOptions {
  numVirtualTokens: number;
  /** peft's encoder_reparameterization_type (default MLP). */
  encoderReparameterizationType?: EncoderType;
  /** Default: the model's hidden size. */
  encoderHiddenSize?: number | null;
  /** LSTM layers (peft ignores it for MLP: always three Linear layers). */
  encoderNumLayers?: number;
  /** Dropout between LSTM layers during training (peft: unused by the MLP). */
  encoderDropout?: number;
  /**
   * Ours: the paper's templates. Inputs carry this token id where the pseudo tokens go (build them
   * with `templateExample`); each row's k-th such token is replaced by prompt row k.
   */
  placeholderTokenId?: number | null;
  taskType?: string | null;
  modulesToSave?: readonly string[] | null;
  initSeed?: number;
}

export class PTuningConfig implements PeftConfig {
  readonly peftType = 'P_TUNING';
  readonly numVirtualTokens: number;
  readonly encoderReparameterizationType: EncoderType;
  readonly encoderHiddenSize: number | null;
  readonly encoderNumLayers: number;
  readonly encoderDropout: number;
  readonly placeholderTokenId: number | null;
  readonly taskType: string | null;
  readonly modulesToSave: readonly string[] | null;
  readonly initSeed: number;
  /** A loaded adapter is the encoder's saved output: a plain table. */
  readonly baked: boolean;

  constructor(options: PTuningConfigOptions, baked = false) {
    const fail = (field: string, expected: string, got: unknown): never => {
      throw new Error(`PTuningConfig.${field}: expected ${expected}, got ${preview(got)}`);
    };
    const positive = (value: unknown): boolean => Number.isInteger(value) && (value as number) > 0;
    this.numVirtualTokens = options.numVirtualTokens;
    if (!positive(this.numVirtualTokens)) fail('numVirtualTokens', 'a positive integer', this.numVirtualTokens);
    this.encoderReparameterizationType = options.encoderReparameterizationType ?? 'MLP';
    if (!['MLP', 'LSTM'].includes(this.encoderReparameterizationType))
      fail('encoderReparameterizationType', 'MLP or LSTM', this.encoderReparameterizationType);
    this.encoderHiddenSize = options.encoderHiddenSize ?? null;
    if (this.encoderHiddenSize !== null && !positive(this.encoderHiddenSize))
      fail('encoderHiddenSize', 'a positive integer', this.encoderHiddenSize);
    this.encoderNumLayers = options.encoderNumLayers ?? 2;
    if (!positive(this.encoderNumLayers)) fail('encoderNumLayers', 'a positive integer', this.encoderNumLayers);
    this.encoderDropout = options.encoderDropout ?? 0;
    if (!(this.encoderDropout >= 0 && this.encoderDropout < 1))
      fail('encoderDropout', 'a number in [0, 1)', this.encoderDropout);
    this.placeholderTokenId = options.placeholderTokenId ?? null;
    if (
      this.placeholderTokenId !== null &&
      !(Number.isInteger(this.placeholderTokenId) && this.placeholderTokenId >= 0)
    ) {
      fail('placeholderTokenId', 'a token id', this.placeholderTokenId);
    }
    this.taskType = options.taskType ?? null;
    this.modulesToSave = options.modulesToSave ?? null;
    this.initSeed = options.initSeed ?? 0;
    this.baked = baked;
  }

  toJson(host: PeftHost): Record<string, unknown> {
    return {
      ...promptLearningJson(host, this),
      encoder_dropout: this.encoderDropout,
      encoder_hidden_size: this.encoderHiddenSize ?? host.config.hiddenSize,
      encoder_num_layers: this.encoderNumLayers,
      encoder_reparameterization_type: this.encoderReparameterizationType,
      // ours (peft ignores unknown keys): template placement
      ...(this.placeholderTokenId !== null ? { placeholder_token_id: this.placeholderTokenId } : {}),
    };
  }

  static fromJson(json: Record<string, unknown>, source = 'adapter_config.json'): PTuningConfig {
    try {
      return new PTuningConfig(
        {
          numVirtualTokens: json.num_virtual_tokens as number,
          encoderReparameterizationType: (json.encoder_reparameterization_type as EncoderType) ?? 'MLP',
          encoderHiddenSize: (json.encoder_hidden_size as number | null) ?? null,
          encoderNumLayers: (json.encoder_num_layers as number) ?? 2,
          encoderDropout: (json.encoder_dropout as number) ?? 0,
          placeholderTokenId: (json.placeholder_token_id as number | null) ?? null,
          taskType: (json.task_type as string | null) ?? null,
          modulesToSave: (json.modules_to_save as string[] | null) ?? null,
        },
        true,
      );
    } catch (error) {
      throw new Error(`${source}: ${(error as Error).message}`);
    }
  }
}
