/** quantkit: quantize neural-network weights to 8/4/2 bits and run quantized layers on the CPU. */
export { QuantkitError, type QuantkitErrorCode } from './errors.js';
export { Tensor, type DType, type TypedData, DTYPE_BYTES } from './tensor.js';
export { setThreads, getThreads, isa, availableIsas, selectIsa, type IsaName } from './runtime.js';
export { QuantizedTensor, type QuantizedTensorInit } from './quant/qtensor.js';
export { quantize, quantizeAsync, dequantize, packInt4, unpackInt4, packInt2, unpackInt2, toFloat32 } from './quant/quantize.js';
export type { Bits, Scheme, Granularity, QuantizeOptions } from './quant/qtypes.js';
export { matmul, matmulAsync } from './ops/matmul.js';
export { Module } from './nn/module.js';
export { Linear, QLinear, type QLinearOptions, type QLinearRuntimeOptions, type ActivationMode } from './nn/linear.js';
