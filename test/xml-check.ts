/**
 * Test helper: a small XML well-formedness checker (no XML parser ships with
 * Node): one root element, balanced tags, quoted attributes without raw '<'
 * or '&', only the predefined/numeric entities, and an SVG namespace root.
 */
export function checkWellFormedSvg(xml: string): void {
  let s = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  let roots = 0;
  const ent = /&(?!(?:lt|gt|amp|apos|quot|#\d+|#x[0-9a-fA-F]+);)/;
  while (s.length > 0) {
    const lt = s.indexOf('<');
    const text = lt < 0 ? s : s.slice(0, lt);
    if (ent.test(text)) throw new Error(`bad entity in text: ${text.slice(0, 40)}`);
    if (text.includes('>')) throw new Error(`raw '>' in text: ${text.slice(0, 40)}`);
    if (stack.length === 0 && text.trim() !== '') throw new Error(`text outside the root: ${text.slice(0, 40)}`);
    if (lt < 0) break;
    s = s.slice(lt);
    const m = /^<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>/.exec(s);
    if (!m) throw new Error(`malformed tag at: ${s.slice(0, 60)}`);
    const [all, close, name, attrs, selfClose] = m as unknown as [string, string, string, string, string];
    if (ent.test(attrs)) throw new Error(`bad entity in attributes of <${name}>`);
    const seen = new Set<string>();
    for (const a of attrs.matchAll(/([\w:.-]+)\s*=/g)) {
      if (seen.has(a[1]!)) throw new Error(`duplicate attribute ${a[1]} on <${name}>`);
      seen.add(a[1]!);
    }
    if (close) {
      if (stack.pop() !== name) throw new Error(`unbalanced </${name}>`);
    } else {
      if (stack.length === 0) {
        roots++;
        if (name !== 'svg' || !attrs.includes('xmlns="http://www.w3.org/2000/svg"')) throw new Error('root must be <svg xmlns=...>');
      }
      if (!selfClose) stack.push(name);
    }
    s = s.slice(all.length);
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (roots !== 1) throw new Error(`expected one root element, found ${roots}`);
}
