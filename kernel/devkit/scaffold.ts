/**
 * `warden new tool|agent NAME`: a component that builds and passes its test right away. Inside
 * the Warden checkout it becomes one of its components (`components/NAME/`, built by
 * `npm run build`, tested by vitest in `test/components/NAME.test.ts`); anywhere else it is a
 * project of its own (`./NAME/`) linked to this checkout through `node_modules/warden`, so that
 * `warden build` and `node --test` need no network. The files are made from `templates/`.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { WardenError } from '../errors.js';
import { COMPONENT_SOURCES, PACKAGE_ROOT } from '../paths.js';

/** The kinds `warden new` makes. */
export type NewKind = 'tool' | 'agent';

/** What {@link newComponent} takes. */
export interface NewOptions {
  kind: NewKind;
  name: string;
  /** Where to create it: `<parent>/NAME/`; default the working directory. The checkout or its `components/` means inside the checkout. */
  parent?: string;
  /** The Warden checkout in-repo components go into; default this package. */
  repoRoot?: string;
}

/** What {@link newComponent} made. */
export interface NewResult {
  kind: NewKind;
  name: string;
  /** Absolute path of the component directory. */
  dir: string;
  /** True when it was made inside the Warden checkout (`components/NAME/`). */
  inRepo: boolean;
  /** Absolute paths of the files written (links included). */
  files: string[];
  /** Time taken, ms. */
  ms: number;
}

const TEMPLATES = join(PACKAGE_ROOT, 'kernel', 'devkit', 'templates');

/** Lower-case kebab: letters and digits in words joined by single dashes, starting with a letter. */
const NAME = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;

/** What each kind does, and what it asks of the operator. */
const KINDS: Record<NewKind, { summary: string; description: string; requests: Record<string, unknown>; limits: Record<string, number>; testNote: string }> = {
  tool: {
    summary: 'given {"path": "README.md"} it reads that file from the task\'s session and answers with its size, line count and first line.',
    description: 'Size, line count and first line of a text file of the session',
    requests: { filesystem: 'session:ro' },
    limits: { timeoutMs: 10_000, memoryMb: 128 },
    testNote: 'The workspace the session shows is a temporary directory holding the test\'s files.',
  },
  agent: {
    summary: 'it gives the model the task and the read-file tool, runs the tool calls the model asks for, and returns the model\'s answer.',
    description: 'Answers questions about the files of the session with the model and read-file',
    requests: { filesystem: 'session:ro', mesh: ['read-file'], inference: ['*'] },
    limits: { timeoutMs: 300_000, memoryMb: 256 },
    testNote: 'No model is needed: the test plays a scripted OpenAI-compatible model on 127.0.0.1 (`startScriptedModel` of `warden/testing`) that asks for read-file once, then answers.',
  },
};

/** Names that cannot be used: built-in components and the folders beside them (`lib`, `types`). */
function reservedNames(repoRoot: string): Set<string> {
  const names = new Set<string>();
  for (const dir of [COMPONENT_SOURCES, join(repoRoot, 'components')]) {
    if (existsSync(dir)) for (const name of readdirSync(dir)) names.add(name);
  }
  return names;
}

function fill(template: string, values: Record<string, string>): string {
  const text = readFileSync(join(TEMPLATES, template), 'utf8');
  return text.replace(/__([A-Z_]+)__/g, (whole, key: string) => values[key] ?? whole);
}

/**
 * Create a new component from the templates.
 * @throws WardenError `E_BAD_INPUT`: a name that is not lower-case kebab or is taken by a
 *   built-in; a directory or test file that exists already (nothing is overwritten)
 */
export function newComponent(options: NewOptions): NewResult {
  const started = performance.now();
  const { kind, name } = options;
  const repoRoot = resolve(options.repoRoot ?? PACKAGE_ROOT);
  if (!NAME.test(name) || name.length > 64) {
    throw new WardenError('E_BAD_INPUT', `${JSON.stringify(name)}: a component name is lower-case kebab-case (letters and digits in words joined by single dashes, starting with a letter, at most 64), e.g. word-count`);
  }
  if (reservedNames(repoRoot).has(name)) {
    throw new WardenError('E_BAD_INPUT', `${name}: Warden has a built-in component or folder of that name (components/${name}); choose another`);
  }
  const parent = resolve(options.parent ?? process.cwd());
  const inRepo = parent === repoRoot || parent === join(repoRoot, 'components');
  const dir = inRepo ? join(repoRoot, 'components', name) : join(parent, name);
  const planned: Array<[string, string]> = [];
  const manifest = { name, version: '0.1.0', kind, description: KINDS[kind].description, requests: KINDS[kind].requests, limits: KINDS[kind].limits };
  planned.push([join(dir, 'index.ts'), fill(`${kind}.index.ts.tmpl`, { NAME: name })]);
  planned.push([join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`]);
  if (inRepo) {
    planned.push([join(repoRoot, 'test', 'components', `${name}.test.ts`), fill(`${kind}.vitest.ts.tmpl`, { NAME: name })]);
  } else {
    planned.push([join(dir, `${name}.test.mjs`), fill(`${kind}.test.mjs.tmpl`, { NAME: name })]);
    planned.push([join(dir, 'tsconfig.json'), `${JSON.stringify(tsconfig(kind), null, 2)}\n`]);
    planned.push([join(dir, 'package.json'), `${JSON.stringify(packageJson(name, manifest.description), null, 2)}\n`]);
    planned.push([join(dir, '.gitignore'), 'dist/\nnode_modules/\n']);
    planned.push([join(dir, 'README.md'), fill('README.md.tmpl', {
      NAME: name, KIND: kind, SUMMARY: KINDS[kind].summary, TEST_NOTE: KINDS[kind].testNote, WARDEN: PACKAGE_ROOT,
      GRANTS: JSON.stringify(KINDS[kind].requests),
    })]);
  }
  for (const path of [dir, ...planned.map(([file]) => file)]) {
    if (existsSync(path)) throw new WardenError('E_BAD_INPUT', `${relative(process.cwd(), path) || path} exists already; choose another name or move it away (nothing was written)`);
  }
  for (const [path, text] of planned) {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text, { flag: 'wx' });
  }
  const files = planned.map(([path]) => path);
  if (!inRepo) files.push(...linkWarden(dir));
  return { kind, name, dir, inRepo, files, ms: Math.round(performance.now() - started) };
}

/** `node_modules/warden` → this checkout, and `node_modules/.bin/warden` → its command (what `npm install` of a local folder makes). */
function linkWarden(dir: string): string[] {
  const link = join(dir, 'node_modules', 'warden');
  const bin = join(dir, 'node_modules', '.bin', 'warden');
  mkdirSync(dirname(bin), { recursive: true });
  symlinkSync(PACKAGE_ROOT, link, 'dir');
  symlinkSync(join('..', 'warden', 'bin', 'warden.js'), bin);
  return [link, bin];
}

/** The editor's view: strict, with the guest types of the component's world. */
function tsconfig(kind: NewKind): unknown {
  return {
    compilerOptions: {
      target: 'ES2022',
      module: 'ESNext',
      moduleResolution: 'Bundler',
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      lib: ['ES2022', 'ESNext.Disposable'],
      types: [`warden/types/${kind}-component`],
    },
    include: ['*.ts'],
  };
}

function packageJson(name: string, description: string): unknown {
  return {
    name,
    version: '0.1.0',
    private: true,
    description,
    type: 'module',
    scripts: { build: 'warden build', watch: 'warden build --watch', test: 'node --test' },
    // The link node_modules/warden points here; listing it keeps `npm install` from removing it.
    devDependencies: { warden: `file:${PACKAGE_ROOT}` },
  };
}
