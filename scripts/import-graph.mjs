#!/usr/bin/env node
// Prints which workspace package imports which, read from the import statements of each package's
// source (src/, not tests): the graph the package rules in biome.json hold (a method imports only
// @peft/core; nothing imports an app). `--tests` adds what test files import.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const withTests = process.argv.includes('--tests');
const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"](@peft\/[a-z-]+)|import\(\s*['"](@peft\/[a-z-]+)/g;

function sourceFiles(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' || entry.name === 'dist' ? [] : sourceFiles(full);
    return /\.(ts|mts|mjs|js)$/.test(entry.name) ? [full] : [];
  });
}

const rows = [];
for (const group of ['packages', 'apps']) {
  for (const folder of fs.readdirSync(path.join(root, group)).sort()) {
    const dir = path.join(root, group, folder);
    const manifest = path.join(dir, 'package.json');
    if (!fs.existsSync(manifest)) continue;
    const { name, private: isPrivate } = JSON.parse(fs.readFileSync(manifest, 'utf8'));
    const folders = withTests ? ['src', 'test'] : ['src'];
    const imported = new Set();
    for (const file of folders.flatMap((f) => sourceFiles(path.join(dir, f)))) {
      for (const match of fs.readFileSync(file, 'utf8').matchAll(IMPORT)) {
        const target = match[1] ?? match[2];
        if (target !== name) imported.add(target);
      }
    }
    rows.push(`${name}${isPrivate ? ' (private)' : ''} -> ${[...imported].sort().join(', ') || '(no @peft package)'}`);
  }
}
console.log(rows.join('\n'));
