import { describe, expect, it } from 'vitest';
import { MAX_ANSWER_BYTES, MAX_TEMPLATE_NAME, decodeAnswer, decodeQuestion, encodeAnswer, encodeQuestion, type ServedTemplate } from '../../src/fleet/answer.js';

const HASH = 'a'.repeat(64);
const served = (template: string, extra: Partial<ServedTemplate> = {}): ServedTemplate => ({ template, hash: HASH, members: 3, ageMs: 1500, ...extra });
const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

describe('fleet questions', () => {
  it('round-trips the group and the page', () => {
    expect(decodeQuestion(encodeQuestion({ group: 'edge', from: 0 }))).toEqual({ group: 'edge', from: 0 });
    expect(decodeQuestion(encodeQuestion({ group: 'edge', from: 12 }))).toEqual({ group: 'edge', from: 12 });
  });

  it.each([
    ['no payload', null],
    ['not JSON', Buffer.from('{nope')],
    ['another version', json({ v: 2, group: 'edge' })],
    ['a group with a space', json({ v: 1, group: 'a b' })],
    ['a negative page', json({ v: 1, group: 'edge', from: -1 })],
    ['a page beyond the limit', json({ v: 1, group: 'edge', from: 10_000 })],
    ['too long', json({ v: 1, group: 'edge', pad: 'x'.repeat(300) })],
  ])('refuses %s', (_, payload) => {
    expect(decodeQuestion(payload)).toBeUndefined();
  });
});

describe('fleet answers', () => {
  it('round-trips templates, sorted by name, hashes cut to 16 digits, ages rounded', () => {
    const answer = encodeAnswer([served('web', { ageMs: 12.6 }), served('api', { members: 0 })], 0);
    expect(decodeAnswer(answer)).toEqual({
      templates: [
        { template: 'api', hash: 'a'.repeat(16), members: 0, ageMs: 1500 },
        { template: 'web', hash: 'a'.repeat(16), members: 3, ageMs: 13 },
      ],
      more: 0,
    });
  });

  it('pages: each page fits the limit, says how many follow, and the pages together hold every template', () => {
    const all = Array.from({ length: 40 }, (_, i) => served(`template-with-a-long-name-${String(i).padStart(2, '0')}`));
    const seen: string[] = [];
    for (let from = 0, pages = 0; ; pages++) {
      const bytes = encodeAnswer(all, from);
      expect(bytes.length).toBeLessThanOrEqual(MAX_ANSWER_BYTES);
      const page = decodeAnswer(bytes)!;
      expect(page.templates.length).toBeGreaterThan(0);
      seen.push(...page.templates.map((t) => t.template));
      from += page.templates.length;
      expect(page.more).toBe(all.length - from);
      if (page.more === 0) {
        expect(pages).toBeGreaterThan(1);
        break;
      }
    }
    expect(seen).toEqual(all.map((t) => t.template));
  });

  it('leaves out templates whose names peers would refuse: too long, or with a control character', () => {
    const answer = decodeAnswer(encodeAnswer([served('x'.repeat(MAX_TEMPLATE_NAME + 1)), served('line\nbreak'), served('ok')], 0));
    expect(answer?.templates.map((t) => t.template)).toEqual(['ok']);
  });

  const row = ['web', 'a'.repeat(16), 3, 1500];
  it.each([
    ['not JSON', Buffer.from('<html>')],
    ['an empty payload', Buffer.alloc(0)],
    ['another version', json({ v: 2, t: [row] })],
    ['rows that are not lists', json({ v: 1, t: [{ template: 'web' }] })],
    ['a short row', json({ v: 1, t: [row.slice(0, 3)] })],
    ['a long hash', json({ v: 1, t: [['web', HASH, 3, 1500]] })],
    ['a hash that is not hex', json({ v: 1, t: [['web', 'z'.repeat(16), 3, 1500]] })],
    ['a negative member count', json({ v: 1, t: [['web', 'a'.repeat(16), -1, 1500]] })],
    ['a fractional age', json({ v: 1, t: [['web', 'a'.repeat(16), 3, 1.5]] })],
    ['an age of centuries', json({ v: 1, t: [['web', 'a'.repeat(16), 3, 1e13]] })],
    ['an empty template name', json({ v: 1, t: [['', 'a'.repeat(16), 3, 1500]] })],
    ['a template name with a newline', json({ v: 1, t: [['web\nINJECTED', 'a'.repeat(16), 3, 1500]] })],
    ['a template name with an escape sequence', json({ v: 1, t: [['web\u001b[2J', 'a'.repeat(16), 3, 1500]] })],
    ['a template named twice', json({ v: 1, t: [row, row] })],
    ['a negative page count', json({ v: 1, t: [row], more: -1 })],
    ['a payload larger than any agent forwards', json({ v: 1, t: [row], pad: 'x'.repeat(5000) })],
  ])('refuses %s', (_, payload) => {
    expect(decodeAnswer(payload)).toBeUndefined();
  });

  it('ignores fields a later version may add', () => {
    expect(decodeAnswer(json({ v: 1, t: [row], later: { x: 1 } }))).toEqual({ templates: [{ template: 'web', hash: 'a'.repeat(16), members: 3, ageMs: 1500 }], more: 0 });
  });
});
