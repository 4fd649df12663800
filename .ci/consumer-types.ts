// Type-checked by .ci/run in a fresh project against the packed package,
// with TypeScript 5.9 and 7, several module resolutions, with and without
// skipLibCheck, and without @types/node: the published types must stand alone.
import { Tensor, quantize, matmul, loadModel, HfTokenizer, parseSafetensors, QuantkitError, generate, type Tokenizer } from 'quantkit';
const t = new Tensor('f32', [1, 2], new Float32Array(2));
const y: Tensor<'f32'> = matmul(t, quantize(new Tensor('f32', [2, 2], new Float32Array(4)), { bits: 8, scheme: 'sym' }));
export async function f(p: string): Promise<number> {
  const { model, tokenizer } = await loadModel(p);
  const tok: Tokenizer | undefined = tokenizer;
  for await (const g of generate(model, tok!, 'Hi', { maxNewTokens: 2 })) console.log(g.text);
  const st = parseSafetensors(new Uint8Array(8));
  console.log(st.names, y.shape, tok instanceof HfTokenizer ? tok.core.id_to_token(1) : '', new QuantkitError('ERR_BAD_FILE', 'x').code);
  return 1;
}
