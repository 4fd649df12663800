/**
 * quantkit/serve: batched generation and the HTTP server, a subpath of its
 * own so that `import 'quantkit'` does not load the HTTP stack.
 */
export { BatchScheduler, type SchedulerOptions, type SequenceRequest, type SequenceHandle, type SequenceFinish, type StepInfo } from './scheduler.js';
export { LocalEngine, type BatchEngine, type EngineInfo, type EngineItem } from './engine.js';
export { WorkerEngine, type EngineModelSpec } from './worker-engine.js';
export { QuantkitServer, type ServeOptions, type ServedModel, type ServedDecoder, type ServedEncoder } from './server.js';
export { encoderEmbedder, type Embedder } from './embedder.js';
