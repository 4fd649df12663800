/**
 * Where the shared test fixtures live (../shared/fixtures next to the repo,
 * or $QUANTKIT_FIXTURES) and a guard for tests that need them: locally a
 * missing fixture skips with a message; under CI it fails loudly, so a
 * broken fixture mount cannot silently turn the suite green.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const FIXTURES_DIR = process.env.QUANTKIT_FIXTURES
  ? path.resolve(process.env.QUANTKIT_FIXTURES)
  : path.resolve(repo, '..', 'shared', 'fixtures');

/** Absolute path of a fixture file. */
export function fixture(...parts: string[]): string {
  return path.join(FIXTURES_DIR, ...parts);
}

/** Whether the fixture dir (and every listed file in it) exists. */
export function fixturesPresent(...files: string[]): boolean {
  return fs.existsSync(FIXTURES_DIR) && files.every((f) => fs.existsSync(fixture(f)));
}

/**
 * Call at the top level of a test file: returns whether the fixtures are
 * there, for `describe.skipIf(!present)`. When they are missing it logs why
 * the tests are skipped, or, with CI set, registers a failing test.
 */
export function requireFixtures(...files: string[]): boolean {
  const present = fixturesPresent(...files);
  if (!present) {
    const missing = [FIXTURES_DIR, ...files.map((f) => fixture(f))].filter((p) => !fs.existsSync(p));
    if (process.env.CI) {
      it('fixtures are present (required when CI is set)', () => {
        throw new Error(`fixtures not found at ${FIXTURES_DIR} (missing: ${missing.join(', ')}); CI must provide them`);
      });
    } else {
      console.log(`fixtures not found at ${FIXTURES_DIR}: skipping (missing: ${missing.join(', ')})`);
    }
  }
  return present;
}
