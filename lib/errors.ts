/**
 * Errors. A wrong type is a TypeError, a value out of range (shape, length,
 * option) a RangeError; both name the argument. Everything else quantkit
 * refuses is a QuantkitError with a stable `code`.
 */

export type QuantkitErrorCode =
  | 'ERR_NONFINITE' // NaN or Inf in a tensor that must be finite
  | 'ERR_UNSUPPORTED' // a valid combination this build does not implement
  | 'ERR_BAD_FILE' // a file that is truncated, corrupt or of the wrong format
  | 'ERR_BAD_CONFIG' // a model config that is missing a field or names an unknown architecture
  | 'ERR_NOT_FOUND' // a file or tensor that should exist does not
  | 'ERR_DISPOSED' // use of a native resource after dispose()
  | 'ERR_BUSY' // a resource one call at a time may use (a KV cache) is held by a call still running
  | 'ERR_NOT_POSITIVE_DEFINITE' // a matrix that must be symmetric positive definite (a calibration Hessian) is not
  | 'ERR_OVERLOADED' // a queue or memory budget is full now (try again later)
  | 'ERR_TOO_LARGE' // a request that could never fit the configured limits (KV budget, context)
  | 'ERR_CLOSED' // use of a scheduler or server that is shutting down
  | 'ERR_NATIVE'; // the native addon reported a failure (out of memory, ...)

export class QuantkitError extends Error {
  readonly code: QuantkitErrorCode;
  constructor(code: QuantkitErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QuantkitError';
    this.code = code;
  }
}

/** A TypeError naming `arg`: "<fn>: <arg> must be ..." */
export function typeError(fn: string, arg: string, what: string): TypeError {
  return new TypeError(`${fn}: '${arg}' ${what}`);
}

/** A RangeError naming `arg`. */
export function rangeError(fn: string, arg: string, what: string): RangeError {
  return new RangeError(`${fn}: '${arg}' ${what}`);
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  if (typeof v === 'object') return `an object (${(v as object).constructor?.name ?? 'Object'})`;
  return `${typeof v} ${String(v)}`;
}
