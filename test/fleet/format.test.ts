import { describe, expect, it } from 'vitest';
import { formatFleet } from '../../src/cli/commands/fleet.js';
import { assessFleet } from '../../src/fleet/survey.js';

describe('the fleet table', () => {
  it('shows names from the network escaped, the own node starred, invalid and partial answers', () => {
    const now = 1_000_000_000;
    const view = assessFleet(
      [
        { node: 'lb-1', templates: [{ template: 'web', hash: '0123456789abcdef', members: 3, ageMs: 90_000 }], omitted: 2 },
        { node: 'lb-2\u202eevil', templates: [{ template: 'web', hash: '0123456789abcdef', members: 3, ageMs: 3_600_000 }], omitted: 0 },
        { node: 'lb-3', templates: undefined, omitted: 0 },
      ],
      { askedAt: now, lagMs: 30_000, now },
    );
    expect(formatFleet(view, 'lb-1', 'edge', now).split('\n')).toEqual([
      'NODE              TEMPLATE                STATE    HASH              MEMBERS  CHANGED  DIFFERS FOR',
      'lb-1 *            web                     ok       0123456789abcdef  3        1m ago   -',
      'lb-1 *            (2 more, not reported)  -        -                 -        -        -',
      'lb-2\\u{202e}evil  web                     ok       0123456789abcdef  3        1h ago   -',
      'lb-3              -                       INVALID  -                 -        -        -',
      '',
      'web: majority 0123456789abcdef; 2 agree, 0 differ, 0 lag (longer than 30s)',
      '3 rosterds of group edge answered; 1 flagged',
      '',
    ]);
  });
});
