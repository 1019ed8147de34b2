// A child process for the crash tests (crash.test.ts): commits one session with the built kernel
// and kills itself with SIGKILL just before the commit's step number CRASH_AT (1-based), as a
// power cut or `kill -9` would stop it there. With CRASH_AT = 0 it commits fully and prints
// `{"steps": N}`, the number of steps of that commit. With CRASH_AT = -1 it prints `ready` and
// commits fully, so the parent can kill it at a moment of its choosing.
import { SessionFs } from '../../dist/kernel/vfs/index.js';

const [sessionsDir, id, crashAtText] = process.argv.slice(2);
const crashAt = Number(crashAtText);
let steps = 0;
const sessions = new SessionFs(sessionsDir);
if (crashAt === -1) process.stdout.write('ready\n');
sessions.commit(id, {
  step: () => {
    steps++;
    if (steps === crashAt) process.kill(process.pid, 'SIGKILL');
  },
});
process.stdout.write(`${JSON.stringify({ steps })}\n`);
