// The coder agent: loops inference with tool schemas → tool calls over the mesh → results,
// until the model answers without tool calls or the turn limit is hit.
import { chat, type Message, type ToolSchema } from 'warden:kernel/inference@0.1.0';
import { call, listTools } from 'warden:kernel/mesh@0.1.0';
import { report } from 'warden:kernel/progress@0.1.0';
import { log } from 'warden:kernel/log@0.1.0';
import { errorText } from '../lib/errors.js';
import type { Outcome, Task } from 'warden:kernel/types@0.1.0';

const SYSTEM = [
  'You are a careful coding agent working in a repository through tools.',
  'Paths are relative to the repository root. Explore with list-files and grep, read with read-file,',
  'change files with edit-file (exact replacements) or write-file. Make every change the task needs,',
  'then answer with a short summary of what you changed and no tool calls.',
].join(' ');

function message(role: Message['role'], content: string, extra: Partial<Message> = {}): Message {
  return { role, content, toolCalls: [], toolCallId: null as unknown as undefined, ...extra };
}

export const agent = {
  run(task: Task): Outcome {
    const tools: ToolSchema[] = listTools().map((t) => ({ name: t.name, description: t.description, parameters: t.inputSchema }));
    // A resumed task continues from the conversation the kernel recorded.
    const messages: Message[] = task.history
      ? (JSON.parse(task.history) as Message[]).map((m) => message(m.role, m.content ?? '', { toolCalls: m.toolCalls ?? [], toolCallId: m.toolCallId ?? (null as unknown as undefined) }))
      : [message('system', SYSTEM), message('user', task.prompt)];
    const first = messages.filter((m) => m.role === 'assistant').length + 1;
    for (let turn = first; turn <= task.maxTurns; turn++) {
      report('inference', `turn ${turn}`);
      let response;
      try {
        response = chat({ model: task.model, messages, tools, maxTokens: null as unknown as undefined });
      } catch (err) {
        throw `inference failed: ${errorText(err)}`;
      }
      messages.push(message('assistant', response.content, { toolCalls: response.toolCalls }));
      if (response.toolCalls.length === 0) {
        report('answer', response.content.slice(0, 2000));
        return { summary: response.content, turns: turn };
      }
      for (const toolCall of response.toolCalls) {
        let output: string;
        try {
          const result = call(toolCall.name, 'call', { tag: 'json', val: toolCall.arguments || '{}' });
          output = (JSON.parse(result.tag === 'json' ? result.val : '{}') as { output: string }).output;
        } catch (err) {
          output = `error: ${errorText(err)}`;
          log('warn', `${toolCall.name} failed: ${output}`);
        }
        messages.push(message('tool', output, { toolCallId: toolCall.id }));
      }
    }
    report('limit', `stopped after ${task.maxTurns} turns`);
    return { summary: `stopped after ${task.maxTurns} turns without a final answer`, turns: task.maxTurns };
  },
};
