/**
 * Elementwise activations on f32 activations, in place on a Float32Array
 * (activations are always f32; working in place avoids one allocation per
 * layer). GELU comes in its exact (erf) form and the tanh approximation
 * GPT-2 was trained with ("gelu_new").
 */
import { QuantkitError } from '../errors.js';
import { addInPlace as addF32, geluTanhInPlace, siluMulInPlace } from '../ops/elementwise.js';

export type ActivationFn = (x: Float32Array) => Float32Array;

/** x * sigmoid(x) (Llama's SwiGLU gate). */
export function silu(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    x[i] = v / (1 + Math.exp(-v));
  }
  return x;
}

export function relu(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) if (x[i]! < 0) x[i] = 0; // NaN stays NaN (visible)
  return x;
}

/**
 * erf(x) with |error| < 1.2e-7 (Numerical Recipes' Chebyshev fit of erfc),
 * well below f32 resolution, so exact GELU matches torch to f32 rounding.
 */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - r : r - 1;
}

/** GELU, exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). */
export function geluExact(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    x[i] = 0.5 * v * (1 + erf(v * Math.SQRT1_2));
  }
  return x;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** GELU, tanh approximation ("gelu_new", "gelu_pytorch_tanh"): the float64 definition (the models run geluTanhNative). */
export function geluTanh(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    x[i] = 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)));
  }
  return x;
}

/**
 * GELU, tanh form, natively (geluTanhInPlace: f32 with the kernels'
 * exponential, within ~3e-7 of geluTanh; the same bits for any length).
 */
export function geluTanhNative(x: Float32Array): Float32Array {
  return geluTanhInPlace(x);
}

/** HF activation names (config hidden_act / activation_function) -> function. */
const BY_NAME: Readonly<Record<string, ActivationFn>> = {
  silu,
  swish: silu,
  relu,
  gelu: geluExact,
  gelu_new: geluTanhNative,
  gelu_pytorch_tanh: geluTanhNative,
  gelu_fast: geluTanhNative, // the same curve as gelu_new up to rounding
};

export function activationNames(): string[] {
  return Object.keys(BY_NAME);
}

/** The activation for an HF name; ERR_UNSUPPORTED for one quantkit does not implement. */
export function activationByName(name: string, where = 'config'): ActivationFn {
  const fn = Object.prototype.hasOwnProperty.call(BY_NAME, name) ? BY_NAME[name] : undefined;
  if (fn === undefined) {
    throw new QuantkitError('ERR_UNSUPPORTED', `${where}: activation '${name}' is not supported (supported: ${activationNames().join(', ')})`);
  }
  return fn;
}

/** dst += src, elementwise (residual connections). */
export function addInPlace(dst: Float32Array, src: Float32Array): Float32Array {
  return addF32(dst, src); // natively for long arrays; the same f32 sums either way
}

/** dst *= src, elementwise (gated MLPs). */
export function mulInPlace(dst: Float32Array, src: Float32Array): Float32Array {
  for (let i = 0; i < dst.length; i++) dst[i]! *= src[i]!;
  return dst;
}

/**
 * dst = act(dst) * src, in place (the gated MLPs: SwiGLU and the like).
 * SiLU runs natively on the thread pool (siluMulInPlace: f32 with the
 * kernels' exponential, within 4e-7 of silu() then multiply); other
 * activations here, then mulInPlace.
 */
export function gateInPlace(act: ActivationFn, dst: Float32Array, src: Float32Array): Float32Array {
  if (act === silu) return siluMulInPlace(dst, src);
  return mulInPlace(act(dst), src);
}
