/**
 * The first step of `warden build`: a component's TypeScript checked against the guest types
 * generated from `wit/` (`components/types/<kind>-component.d.ts`), and each export its world
 * expects checked against the interface it implements. Every problem is a {@link BuildError}
 * naming the file, line and column, as `tsc` would print it.
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import ts from 'typescript';
import { COMPONENT_SOURCES } from '../paths.js';

/** One problem found while building a component; `line` and `column` are 1-based. */
export interface BuildError {
  /** Path relative to the component directory (`index.ts`, `wit/world.wit`), or absolute outside it. */
  file: string;
  line: number;
  column: number;
  /** One line; `TS2322: …` for compiler diagnostics. */
  message: string;
}

/** `index.ts:3:7: error TS2322: …`, the way `tsc --pretty false` prints a diagnostic (`error: …` for the others). */
export function formatBuildError(e: BuildError): string {
  return `${e.file}:${e.line}:${e.column}: error${/^TS\d+:/.test(e.message) ? ' ' : ': '}${e.message}`;
}

/** Where the guest types are: `components/types/` of this package (`warden/types/*` for authors). */
export const GUEST_TYPES = join(COMPONENT_SOURCES, 'types');

/**
 * The compiler options `warden build` checks with, the same as the `tsconfig.json` that
 * `warden new` writes (`ESNext.Disposable`: the WASI resources are declared disposable).
 */
export const GUEST_COMPILER_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
  types: [],
};

/** An export a world expects: `tool` implementing `warden:kernel/tool@0.1.0`. */
export interface WorldExport {
  name: string;
  /** The interface's module in the guest types. */
  module: string;
}

/** The exports of world `<kind>-component`, read from its generated guest types. */
export function worldExports(kind: string): WorldExport[] {
  const text = readFileSync(join(GUEST_TYPES, `${kind}-component.d.ts`), 'utf8');
  return [...text.matchAll(/^\s*export \* as (\w+) from '([^']+)';/gm)].map((m) => ({ name: m[1]!, module: m[2]! }));
}

/** The hidden module that holds the world check (never written to disk). */
const CHECK_FILE = '__warden_world_check__.ts';

/**
 * A module that assigns each export of `index.ts` to the interface type its world expects: a
 * missing export or a method of the wrong shape becomes a diagnostic in it.
 */
function worldCheckSource(exports: WorldExport[]): string {
  return [
    "import * as component from './index.js';",
    ...exports.map((e) => `export const ${e.name}: typeof import('${e.module}') = component.${e.name};`),
  ].join('\n');
}

/** 1-based line and column of a position in a source file. */
function position(file: ts.SourceFile, at: number): { line: number; column: number } {
  const { line, character } = file.getLineAndCharacterOfPosition(at);
  return { line: line + 1, column: character + 1 };
}

/**
 * Typecheck `<dir>/index.ts` (and what it imports) for world `<kind>-component`.
 * @param dir the component directory
 * @param kind the manifest's kind: `tool`, `agent` or `supervisor`
 * @returns the problems found, empty when it checks
 */
export function typecheckComponent(dir: string, kind: string): BuildError[] {
  const entry = join(dir, 'index.ts');
  const checkPath = join(dir, CHECK_FILE);
  const exports = worldExports(kind);
  const host = ts.createCompilerHost(GUEST_COMPILER_OPTIONS, true);
  const checkSource = ts.createSourceFile(checkPath, worldCheckSource(exports), ts.ScriptTarget.ES2022, true);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, version, onError, create) => (name === checkPath ? checkSource : getSourceFile(name, version, onError, create));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === checkPath || fileExists(name);
  const program = ts.createProgram({
    rootNames: [entry, join(GUEST_TYPES, `${kind}-component.d.ts`), checkPath],
    options: GUEST_COMPILER_OPTIONS,
    host,
  });
  const errors: BuildError[] = [];
  const entrySource = program.getSourceFile(entry);
  for (const d of ts.getPreEmitDiagnostics(program)) {
    if (d.category !== ts.DiagnosticCategory.Error) continue;
    const text = ts.flattenDiagnosticMessageText(d.messageText, ' ').replace(/\s+/g, ' ');
    if (d.file?.fileName === checkPath) {
      errors.push(worldError(d, text, kind, exports, program, entrySource));
    } else if (d.file && d.start !== undefined) {
      errors.push({ file: relative(dir, d.file.fileName) || basename(d.file.fileName), ...position(d.file, d.start), message: `TS${d.code}: ${text}` });
    } else {
      errors.push({ file: 'index.ts', line: 1, column: 1, message: `TS${d.code}: ${text}` });
    }
  }
  return errors;
}

/**
 * A diagnostic of the world check, told in the component's terms: a missing export as the
 * sentence that names what the world expects; a mismatch at the export's declaration.
 */
function worldError(d: ts.Diagnostic, text: string, kind: string, exports: WorldExport[], program: ts.Program, entry: ts.SourceFile | undefined): BuildError {
  const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : 0;
  const expected = exports[line - 1] ?? exports[0]!;
  const checker = program.getTypeChecker();
  const moduleSymbol = entry ? checker.getSymbolAtLocation(entry) : undefined;
  const exported = moduleSymbol ? checker.getExportsOfModule(moduleSymbol) : [];
  const found = exported.find((s) => s.name === expected.name);
  const methods = interfaceMethods(program, expected.module);
  if (!found || !entry) {
    const has = exported.map((s) => `\`${s.name}\``).join(', ') || 'nothing';
    return {
      file: 'index.ts', line: 1, column: 1,
      message: `world ${kind}-component expects index.ts to export \`${expected.name}\` (interface ${expected.module}: an object with ${methods}), but index.ts exports ${has}`,
    };
  }
  const declaration = found.declarations?.[0];
  const at = declaration && declaration.getSourceFile() === entry ? position(entry, declaration.getStart()) : { line: 1, column: 1 };
  return { file: 'index.ts', ...at, message: `TS${d.code}: export \`${expected.name}\` does not implement interface ${expected.module} (${methods}): ${text}` };
}

/** `describe(), call(input)`: the functions an interface module declares, for messages. */
function interfaceMethods(program: ts.Program, module: string): string {
  const names: string[] = [];
  for (const file of program.getSourceFiles()) {
    if (dirname(file.fileName) !== join(GUEST_TYPES, 'interfaces')) continue;
    ts.forEachChild(file, (node) => {
      if (!ts.isModuleDeclaration(node) || node.name.text !== module || !node.body || !ts.isModuleBlock(node.body)) return;
      for (const statement of node.body.statements) {
        if (ts.isFunctionDeclaration(statement) && statement.name) {
          names.push(`${statement.name.text}(${statement.parameters.map((p) => p.name.getText(file)).join(', ')})`);
        }
      }
    });
  }
  return names.join(', ') || 'its functions';
}
