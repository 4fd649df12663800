/**
 * A model's module tree as text, the way print(model) shows a torch module:
 * each module with its children indented, leaves with their shapes and
 * formats (a QLinear with its bits, scheme and group), and runs of identical
 * siblings folded ("(0-4): 5 x LlamaDecoderLayer(...)"), so that a
 * quantized model shows at a glance which layers became QLinear and which
 * stayed float.
 */
import { Embedding } from './embedding.js';
import { Linear, QLinear } from './linear.js';
import type { Module } from './module.js';
import { LayerNorm, RMSNorm } from './norm.js';

/** One line for a leaf module (no children), or undefined for a container. */
function leaf(m: Module): string | undefined {
  if (m instanceof QLinear) {
    const q = m.qweight;
    const K = m.inFeatures;
    const tail = q.granularity === 'group' && K % q.groupSize !== 0 ? ` (last ${K % q.groupSize})` : '';
    const fmt = `int${q.bits} ${q.scheme === 'symmetric' ? 'sym' : 'asym'} ${q.granularity === 'group' ? `g${q.groupSize}${tail}` : `per-${q.granularity}`}`;
    const int8 = q.bits === 4 ? 'W4A8' : 'W8A8';
    const act =
      m.activations === 'int8' ? `, ${int8}` : m.activations === 'int8-prefill' ? `, ${int8} prompts` : m.activations === 'llm.int8' ? `, LLM.int8 t=${m.threshold}` : '';
    return `QLinear(in=${m.inFeatures}, out=${m.outFeatures}, ${fmt}${act}${m.bias ? ', bias' : ''})`;
  }
  if (m instanceof Linear) return `Linear(in=${m.inFeatures}, out=${m.outFeatures}, ${m.weight.dtype}${m.bias ? ', bias' : ''})`;
  if (m instanceof Embedding) return `Embedding(${m.numEmbeddings}, ${m.dim}, ${m.weight.dtype})`;
  if (m instanceof LayerNorm) return `LayerNorm(${m.dim}, eps=${m.eps}${m.weight ? '' : ', no affine'})`;
  if (m instanceof RMSNorm) return `RMSNorm(${m.dim}, eps=${m.eps})`;
  return undefined;
}

function render(m: Module, indent: string): string {
  const own = leaf(m);
  const children = [...m.namedChildren()];
  if (own !== undefined && children.length === 0) return own;
  const name = m.constructor.name;
  if (children.length === 0) return `${name}()`;
  const inner = indent + '  ';
  const lines: string[] = [];
  // fold runs of siblings named 0, 1, 2, ... that render the same
  for (let i = 0; i < children.length; ) {
    const [key, child] = children[i]!;
    const text = render(child, inner);
    let j = i + 1;
    if (/^\d+$/.test(key)) {
      while (j < children.length && /^\d+$/.test(children[j]![0]) && Number(children[j]![0]) === Number(key) + (j - i) && render(children[j]![1], inner) === text) j++;
    }
    lines.push(j - i > 1 ? `${inner}(${key}-${children[j - 1]![0]}): ${j - i} x ${text}` : `${inner}(${key}): ${text}`);
    i = j;
  }
  return `${name}(\n${lines.join('\n')}\n${indent})`;
}

/** The module tree of `m` as text (see the header). */
export function moduleTree(m: Module): string {
  return render(m, '');
}
