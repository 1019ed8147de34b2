/** The scripted OpenAI-compatible server for tests; it ships with the kernel (`warden/testing`). */
export { startScriptedServer, type ScriptedServer, type ScriptedTurn } from '../../kernel/devkit/scripted-model.js';
