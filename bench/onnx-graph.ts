/**
 * Builds single-op ONNX models in JavaScript (no Python at bench time) for
 * bench/ort.ts: the subset of onnx.proto needed to encode a ModelProto with
 * one node, its weights as initializers (raw_data, little-endian) and an
 * activation input X [M, K] whose M is symbolic, so one session serves every M.
 *
 * Models (weights W [N, K] of the quantkit side, converted here):
 *   matmulF32        ai.onnx MatMul(X, B f32 [K, N])                     -> Y f32 [M, N]
 *   dynQuantMatMul   com.microsoft DynamicQuantizeMatMul(X, B i8 [K, N], b_scale [N]) -> Y f32
 *   matMulInteger    ai.onnx MatMulInteger(A u8 [M, K], B i8 [K, N], a_zero_point) -> Y i32
 *   matMulNBits      com.microsoft MatMulNBits(X, B u8 [N, K/32, 16], scales [N, K/32]) -> Y f32
 *
 * protobufjs is required through createRequire and typed by the few members
 * used, so `tsc` over bench/ passes even where bench/node_modules is absent.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface PbType {
  fromObject(o: object): unknown;
  encode(m: unknown): { finish(): Uint8Array };
}
const protobuf = require('protobufjs') as { parse(src: string): { root: { lookupType(name: string): PbType } } };

// Field numbers are onnx.proto's (onnx/onnx, IR version 8); only the fields used are declared.
const ONNX_PROTO = `
syntax = "proto3";
package onnx;
message AttributeProto {
  string name = 1;
  float f = 2;
  int64 i = 3;
  bytes s = 4;
  repeated int64 ints = 8;
  int32 type = 20;
}
message ValueInfoProto { string name = 1; TypeProto type = 2; }
message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  string name = 3;
  string op_type = 4;
  repeated AttributeProto attribute = 5;
  string domain = 7;
}
message TensorProto {
  repeated int64 dims = 1;
  int32 data_type = 2;
  string name = 8;
  bytes raw_data = 9;
}
message TensorShapeProto {
  message Dimension { oneof value { int64 dim_value = 1; string dim_param = 2; } }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor { int32 elem_type = 1; TensorShapeProto shape = 2; }
  oneof value { Tensor tensor_type = 1; }
}
message GraphProto {
  repeated NodeProto node = 1;
  string name = 2;
  repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
}
message OperatorSetIdProto { string domain = 1; int64 version = 2; }
message ModelProto {
  int64 ir_version = 1;
  string producer_name = 2;
  GraphProto graph = 7;
  repeated OperatorSetIdProto opset_import = 8;
}
`;
const ModelProto = protobuf.parse(ONNX_PROTO).root.lookupType('onnx.ModelProto');

/** TensorProto.DataType codes. */
export const DT = { float: 1, uint8: 2, int8: 3, int32: 6 } as const;
type Dt = (typeof DT)[keyof typeof DT];
const ATTR_INT = 2;

type Dim = number | string;
interface Init { name: string; dt: Dt; dims: number[]; data: ArrayBufferView }
interface Node { op: string; domain?: string; inputs: string[]; outputs: string[]; ints?: Record<string, number> }
interface IO { name: string; dt: Dt; dims: Dim[] }

function valueInfo({ name, dt, dims }: IO) {
  return {
    name,
    type: { tensorType: { elemType: dt, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/** Encode a one-graph model; opsets ai.onnx 17 and com.microsoft 1. */
export function encodeModel(nodes: Node[], inits: Init[], inputs: IO[], outputs: IO[]): Uint8Array {
  const model = {
    irVersion: 8,
    producerName: 'quantkit-bench',
    opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }],
    graph: {
      name: 'bench',
      node: nodes.map((n, i) => ({
        name: `n${i}`, opType: n.op, domain: n.domain ?? '', input: n.inputs, output: n.outputs,
        attribute: Object.entries(n.ints ?? {}).map(([name, i]) => ({ name, i, type: ATTR_INT })),
      })),
      initializer: inits.map((t) => ({
        name: t.name, dataType: t.dt, dims: t.dims,
        // A Uint8Array view of the same memory: raw_data is the little-endian bytes (this host is little-endian).
        rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      })),
      input: inputs.map(valueInfo),
      output: outputs.map(valueInfo),
    },
  };
  return ModelProto.encode(ModelProto.fromObject(model)).finish();
}

/** Y = X · B, B = W^T f32 [K, N]. */
export function matmulF32(bKN: Float32Array, K: number, N: number): Uint8Array {
  return encodeModel(
    [{ op: 'MatMul', inputs: ['X', 'B'], outputs: ['Y'] }],
    [{ name: 'B', dt: DT.float, dims: [K, N], data: bKN }],
    [{ name: 'X', dt: DT.float, dims: ['M', K] }],
    [{ name: 'Y', dt: DT.float, dims: ['M', N] }],
  );
}

/** ORT's fused dynamic W8A8: quantizes X to uint8 per tensor at run time, int8 B [K, N] with per-column scale. */
export function dynQuantMatMul(bKN: Int8Array, bScale: Float32Array, K: number, N: number): Uint8Array {
  return encodeModel(
    [{ op: 'DynamicQuantizeMatMul', domain: 'com.microsoft', inputs: ['X', 'B', 'b_scale'], outputs: ['Y'] }],
    [
      { name: 'B', dt: DT.int8, dims: [K, N], data: bKN },
      { name: 'b_scale', dt: DT.float, dims: [N], data: bScale },
    ],
    [{ name: 'X', dt: DT.float, dims: ['M', K] }],
    [{ name: 'Y', dt: DT.float, dims: ['M', N] }],
  );
}

/** Integer-only product on already-quantized activations: A u8 [M, K] with zero point a_zp (input), B i8 [K, N]. */
export function matMulInteger(bKN: Int8Array, K: number, N: number): Uint8Array {
  return encodeModel(
    [{ op: 'MatMulInteger', inputs: ['A', 'B', 'a_zp'], outputs: ['Y'] }],
    [{ name: 'B', dt: DT.int8, dims: [K, N], data: bKN }],
    [{ name: 'A', dt: DT.uint8, dims: ['M', K] }, { name: 'a_zp', dt: DT.uint8, dims: [] }],
    [{ name: 'Y', dt: DT.int32, dims: ['M', N] }],
  );
}

/**
 * 4-bit block-quantized weight: B u8 [N, K/block, block/2] (unsigned nibbles,
 * even element low), scales f32 [N, K/block]; no zero_points input = 8 for all.
 */
export function matMulNBits(b: Uint8Array, scales: Float32Array, K: number, N: number, block: number, accuracyLevel: number): Uint8Array {
  return encodeModel(
    [{
      op: 'MatMulNBits', domain: 'com.microsoft', inputs: ['X', 'B', 'scales'], outputs: ['Y'],
      ints: { K, N, bits: 4, block_size: block, accuracy_level: accuracyLevel },
    }],
    [
      { name: 'B', dt: DT.uint8, dims: [N, K / block, block / 2], data: b },
      { name: 'scales', dt: DT.float, dims: [N, K / block], data: scales },
    ],
    [{ name: 'X', dt: DT.float, dims: ['M', K] }],
    [{ name: 'Y', dt: DT.float, dims: ['M', N] }],
  );
}
