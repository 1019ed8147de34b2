// Secret detection in free text: what counts (PEM keys, known credential formats, secret-named
// assignments on word boundaries, Luhn-valid card numbers), what does not, and redaction that
// never carries the secret out.
import { describe, expect, it } from 'vitest';
import { describeSecrets, findSecrets, hasSecret, luhnValid, redactDeep, redactSecrets } from '../../kernel/secrets/detect.js';

const PEM = '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----';

describe('luhnValid (ISO/IEC 7812-1 Annex B)', () => {
  it('accepts check-digit-correct numbers and refuses the rest', () => {
    for (const n of ['4111111111111111', '5500005555555559', '378282246310005', '79927398713']) expect(luhnValid(n)).toBe(true);
    for (const n of ['4111111111111112', '79927398710', '', '12a4']) expect(luhnValid(n)).toBe(false);
  });
});

describe('findSecrets', () => {
  it.each([
    ['a PEM private key block', `key:\n${PEM}\nend`, 'pem'],
    ['an unterminated PEM block', '-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg', 'pem'],
    ['an OpenAI key', 'export OPENAI=sk-proj-AbCdEfGhIjKlMnOpQrStUvWx', 'credential'],
    ['a GitHub token', 'ghp_0123456789abcdefghijklmnopqrstuvwxyz', 'credential'],
    ['an AWS access key id', 'id AKIAIOSFODNN7EXAMPLE here', 'credential'],
    ['a JWT', 'Authorization eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlLXZhbHVl', 'credential'],
    ['api_key=…', 'api_key=abcd1234', 'assignment'],
    ['"password": "…"', '{"password": "hunter22"}', 'assignment'],
    ['DB_PASSWORD: …', 'DB_PASSWORD: s3cr3t!x', 'assignment'],
    ['a spaced Luhn-valid card', 'card 4111 1111 1111 1111 exp 12/29', 'card'],
    ['a dashed Luhn-valid card', 'card 5500-0055-5555-5559', 'card'],
  ])('finds %s', (_name, text, kind) => {
    const found = findSecrets(text);
    expect(found.map((m) => m.kind)).toContain(kind);
    expect(hasSecret(text)).toBe(true);
  });

  it.each([
    ['"tokenizer" (a longer word)', 'tokenizer = bpe and tokenizers: many'],
    ['"secretary"', 'secretary: Jane Doe'],
    ['"passwords" as prose', 'passwords are hashed with argon2'],
    ['a $VAR reference', 'token=$GITHUB_TOKEN'],
    ['a ${VAR} reference', 'password: ${DB_PASSWORD}'],
    ['placeholders', 'api_key=<your key> password=*** secret=xxxx token=changeme'],
    ['a Luhn-invalid number', 'order 4111 1111 1111 1112'],
    ['all one digit', '0000 0000 0000 0000'],
    ['a short number', 'call 555 0100 or 12345678'],
    ['a public PEM block', '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----'],
    ['a value under 4 characters', 'pwd=abc'],
  ])('does not flag %s', (_name, text) => {
    expect(findSecrets(text)).toEqual([]);
    expect(hasSecret(text)).toBe(false);
  });

  it('gives kinds and offsets of the value only, in order, without overlaps', () => {
    const text = 'a api_key=abcd1234 b 4111111111111111 c';
    const found = findSecrets(text);
    expect(found).toEqual([
      { kind: 'assignment', name: 'api_key', start: 10, end: 18 },
      { kind: 'card', start: 21, end: 37 },
    ]);
    expect(text.slice(found[0]!.start, found[0]!.end)).toBe('abcd1234');
    // An sk- key inside an assignment is one secret, not two.
    expect(findSecrets('api_key=sk-proj-AbCdEfGhIjKlMnOpQrStUvWx')).toHaveLength(1);
  });
});

describe('describeSecrets and redaction', () => {
  it('describes kinds and assignment names, never values', () => {
    const text = `${PEM}\nAPI_KEY=abcd1234 and 4111 1111 1111 1111 and sk-ant-abcdefghijklmnopqrstuvwx`;
    const reason = describeSecrets(findSecrets(text));
    expect(reason).toBe('PEM private key, api_key assignment, payment card number (Luhn), credential token');
    for (const secret of ['abcd1234', '4111', 'sk-ant', 'b3BlbnNz']) expect(reason).not.toContain(secret);
    expect(describeSecrets([])).toBe('');
  });

  it('redacts each secret as [REDACTED:<kind>], in strings and deep in JSON values', () => {
    expect(redactSecrets('login with password=hunter22 now')).toBe('login with password=[REDACTED:assignment] now');
    expect(redactSecrets('nothing here')).toBe('nothing here');
    const value = { messages: [{ content: `use ${PEM}` }, { content: 'card 4111111111111111' }], n: 3, ok: true, api_key: 'plain key name' };
    const redacted = redactDeep(value);
    expect(redacted).toEqual({ messages: [{ content: 'use [REDACTED:pem]' }, { content: 'card [REDACTED:card]' }], n: 3, ok: true, api_key: 'plain key name' });
    expect(value.messages[0]!.content).toContain('BEGIN'); // the input is not changed
  });
});
