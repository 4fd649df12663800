/**
 * Tiny random-weight models in Hugging Face layout, built in memory (a Map
 * is a TensorLookup) through buildModel, the loader's own path: Llama (any
 * head layout), GPT-2, OPT (pre- or post-LayerNorm), CodeGen.
 */
import type { CausalLM } from '../lib/models/causal-lm.js';
import type { QuantizeModelOptions } from '../lib/nn/quantize-model.js';
import type { TensorLookup } from '../lib/models/config.js';
import { buildModel } from '../lib/models/load.js';
import { parseModelConfig } from '../lib/models/registry.js';
import { Tensor } from '../lib/tensor.js';
import { rng } from './helpers.js';

/** name -> [shape, kind]: 'w' a weight (uniform, scale 1/sqrt(fan-in)), 'n' a norm gain (~1), 'b' a bias. */
type Spec = Map<string, [number[], 'w' | 'n' | 'b']>;

export function makeTensors(spec: Spec, seed: number): TensorLookup {
  const r = rng(seed);
  const out = new Map<string, Tensor>();
  for (const [name, [shape, kind]] of spec) {
    const n = shape.reduce((a, d) => a * d, 1);
    const d = new Float32Array(n);
    const scale = kind === 'w' ? 1.7 / Math.sqrt(shape[shape.length - 1]!) : 0.1;
    for (let i = 0; i < n; i++) d[i] = (kind === 'n' ? 1 : 0) + scale * (2 * r() - 1);
    out.set(name, new Tensor('f32', shape, d));
  }
  return { has: (n) => out.has(n), get: (n) => out.get(n)! };
}

export function llamaModel(o: { D: number; F: number; L: number; nH: number; nKv: number; V: number; P: number; seed: number }): CausalLM {
  const { D, F, L, nH, nKv, V, P } = o;
  const hd = D / nH;
  const spec: Spec = new Map([['model.embed_tokens.weight', [[V, D], 'w']], ['model.norm.weight', [[D], 'n']], ['lm_head.weight', [[V, D], 'w']]]);
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}`;
    spec.set(`${p}.self_attn.q_proj.weight`, [[nH * hd, D], 'w']);
    spec.set(`${p}.self_attn.k_proj.weight`, [[nKv * hd, D], 'w']);
    spec.set(`${p}.self_attn.v_proj.weight`, [[nKv * hd, D], 'w']);
    spec.set(`${p}.self_attn.o_proj.weight`, [[D, nH * hd], 'w']);
    spec.set(`${p}.mlp.gate_proj.weight`, [[F, D], 'w']);
    spec.set(`${p}.mlp.up_proj.weight`, [[F, D], 'w']);
    spec.set(`${p}.mlp.down_proj.weight`, [[D, F], 'w']);
    spec.set(`${p}.input_layernorm.weight`, [[D], 'n']);
    spec.set(`${p}.post_attention_layernorm.weight`, [[D], 'n']);
  }
  const config = {
    model_type: 'llama',
    hidden_size: D,
    intermediate_size: F,
    num_hidden_layers: L,
    num_attention_heads: nH,
    num_key_value_heads: nKv,
    vocab_size: V,
    max_position_embeddings: P,
    rms_norm_eps: 1e-5,
    bos_token_id: 1,
    eos_token_id: 2,
  };
  return buildModel(parseModelConfig(config), makeTensors(spec, o.seed), 'memory');
}

/** GPT-2's HF config and tensors (Conv1D layout [in, out]) of the tiny test model. */
export function gpt2Parts(seed: number): { config: Record<string, unknown>; tensors: TensorLookup & { names: string[] } } {
  const D = 32, F = 64, L = 2, V = 50, P = 64;
  const spec: Spec = new Map([['transformer.wte.weight', [[V, D], 'w']], ['transformer.wpe.weight', [[P, D], 'w']], ['transformer.ln_f.weight', [[D], 'n']], ['transformer.ln_f.bias', [[D], 'b']]]);
  for (let i = 0; i < L; i++) {
    const p = `transformer.h.${i}`;
    for (const ln of ['ln_1', 'ln_2']) {
      spec.set(`${p}.${ln}.weight`, [[D], 'n']);
      spec.set(`${p}.${ln}.bias`, [[D], 'b']);
    }
    // Conv1D layout [in, out]
    spec.set(`${p}.attn.c_attn.weight`, [[D, 3 * D], 'w']);
    spec.set(`${p}.attn.c_attn.bias`, [[3 * D], 'b']);
    spec.set(`${p}.attn.c_proj.weight`, [[D, D], 'w']);
    spec.set(`${p}.attn.c_proj.bias`, [[D], 'b']);
    spec.set(`${p}.mlp.c_fc.weight`, [[D, F], 'w']);
    spec.set(`${p}.mlp.c_fc.bias`, [[F], 'b']);
    spec.set(`${p}.mlp.c_proj.weight`, [[F, D], 'w']);
    spec.set(`${p}.mlp.c_proj.bias`, [[D], 'b']);
  }
  const config = { model_type: 'gpt2', n_embd: D, n_layer: L, n_head: 4, n_inner: F, vocab_size: V, n_positions: P, bos_token_id: 0, eos_token_id: 0 };
  return { config, tensors: Object.assign(makeTensors(spec, seed), { names: [...spec.keys()] }) };
}

export function gpt2Model(seed: number): CausalLM {
  const { config, tensors } = gpt2Parts(seed);
  return buildModel(parseModelConfig(config), tensors, 'memory');
}

export function optModel(seed: number, preNorm: boolean): CausalLM {
  const D = 32, F = 64, L = 2, V = 50, P = 64;
  const spec: Spec = new Map([['model.decoder.embed_tokens.weight', [[V, D], 'w']], ['model.decoder.embed_positions.weight', [[P + 2, D], 'w']]]);
  if (preNorm) {
    spec.set('model.decoder.final_layer_norm.weight', [[D], 'n']);
    spec.set('model.decoder.final_layer_norm.bias', [[D], 'b']);
  }
  for (let i = 0; i < L; i++) {
    const p = `model.decoder.layers.${i}`;
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      spec.set(`${p}.self_attn.${n}.weight`, [[D, D], 'w']);
      spec.set(`${p}.self_attn.${n}.bias`, [[D], 'b']);
    }
    for (const ln of ['self_attn_layer_norm', 'final_layer_norm']) {
      spec.set(`${p}.${ln}.weight`, [[D], 'n']);
      spec.set(`${p}.${ln}.bias`, [[D], 'b']);
    }
    spec.set(`${p}.fc1.weight`, [[F, D], 'w']);
    spec.set(`${p}.fc1.bias`, [[F], 'b']);
    spec.set(`${p}.fc2.weight`, [[D, F], 'w']);
    spec.set(`${p}.fc2.bias`, [[D], 'b']);
  }
  const config = { model_type: 'opt', hidden_size: D, num_hidden_layers: L, num_attention_heads: 4, ffn_dim: F, vocab_size: V, max_position_embeddings: P, do_layer_norm_before: preNorm };
  return buildModel(parseModelConfig(config), makeTensors(spec, seed), 'memory');
}

/** CodeGen: 2 parallel blocks (one ln_1 feeds attention and MLP), 8 heads x 8 with rotary_dim 4, 4 qkv shards. */
export function codegenModel(seed: number): CausalLM {
  const D = 64, F = 96, L = 2, V = 48, P = 64;
  const spec: Spec = new Map([['transformer.wte.weight', [[V, D], 'w']], ['transformer.ln_f.weight', [[D], 'n']], ['transformer.ln_f.bias', [[D], 'b']], ['lm_head.weight', [[V, D], 'w']], ['lm_head.bias', [[V], 'b']]]);
  for (let i = 0; i < L; i++) {
    const p = `transformer.h.${i}`;
    spec.set(`${p}.ln_1.weight`, [[D], 'n']);
    spec.set(`${p}.ln_1.bias`, [[D], 'b']);
    spec.set(`${p}.attn.qkv_proj.weight`, [[3 * D, D], 'w']);
    spec.set(`${p}.attn.out_proj.weight`, [[D, D], 'w']);
    spec.set(`${p}.mlp.fc_in.weight`, [[F, D], 'w']);
    spec.set(`${p}.mlp.fc_in.bias`, [[F], 'b']);
    spec.set(`${p}.mlp.fc_out.weight`, [[D, F], 'w']);
    spec.set(`${p}.mlp.fc_out.bias`, [[D], 'b']);
  }
  const config = { model_type: 'codegen', n_embd: D, n_layer: L, n_head: 8, rotary_dim: 4, n_inner: F, n_positions: P, n_ctx: P, vocab_size: V, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new', tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2 };
  return buildModel(parseModelConfig(config), makeTensors(spec, seed), 'memory');
}

/** Every weight format a decoder runs in, by name (null: as built, f32): what the reuse and batching tests sweep. */
export const DECODER_FORMATS: Record<string, QuantizeModelOptions | null> = {
  fp32: null,
  int8: { weights: 'int8' },
  'int4 g32': { weights: 'int4', groupSize: 32 },
  W8A8: { weights: 'int8', activations: 'int8' },
  'W4A8 g32': { weights: 'int4', groupSize: 32, activations: 'int8' },
  'LLM.int8': { weights: 'int8', activations: 'llm.int8', threshold: 0.5 },
};
