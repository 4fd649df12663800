/**
 * binding.gyp (node-gyp, prebuildify) and CMakeLists.txt (cmake-js, the
 * native test program) must compile the same native sources. CI builds both;
 * this test makes a drift visible without building.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');

function gypSources(): Set<string> {
  const gyp = JSON.parse(fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8'));
  const out = new Set<string>();
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (v && typeof v === 'object') {
      for (const [k, val] of Object.entries(v)) {
        if (k === 'sources') (val as string[]).forEach((s) => out.add(s));
        else visit(val);
      }
    }
  };
  visit(gyp);
  return out;
}

function cmakeSources(): Set<string> {
  const text = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
  const out = new Set<string>();
  for (const m of text.matchAll(/set\((QK_\w+_SOURCES)([^)]*)\)/g)) {
    if (m[1] === 'QK_TEST_SOURCES' || m[1] === 'QK_ARCH_SOURCES') continue;
    for (const s of m[2]!.split(/\s+/)) if (s.endsWith('.cpp')) out.add(s);
  }
  return out;
}

describe('build files', () => {
  it('binding.gyp and CMakeLists.txt list the same sources, and they exist', () => {
    const g = [...gypSources()].sort();
    const c = [...cmakeSources()].sort();
    expect(g).toEqual(c);
    for (const f of g) expect(fs.existsSync(path.join(root, f)), f).toBe(true);
  });

  it('every .cpp under native/ (but tests) is built', () => {
    const all: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(path.join(root, d), { withFileTypes: true })) {
        const p = `${d}/${e.name}`;
        if (e.isDirectory()) walk(p);
        else if (p.endsWith('.cpp') && !p.startsWith('native/test/')) all.push(p);
      }
    };
    walk('native');
    expect(all.sort()).toEqual([...gypSources()].sort());
  });
});
