import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createSchedule } from '../../src/runner/schedule.js';

describe('schedule (wait min/max)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('min: fires min after a single change', () => {
    const fire = vi.fn();
    const s = createSchedule({ min: 200, max: 1000 }, fire);
    s.poke();
    vi.advanceTimersByTime(199);
    expect(fire).not.toHaveBeenCalled();
    expect(s.pending).toBe(true);
    vi.advanceTimersByTime(1);
    expect(fire).toHaveBeenCalledTimes(1);
    expect(s.pending).toBe(false);
  });

  it('snooze: each change pushes the render to min after it', () => {
    const fire = vi.fn();
    const s = createSchedule({ min: 200, max: 1000 }, fire);
    s.poke();
    vi.advanceTimersByTime(150);
    s.poke();
    vi.advanceTimersByTime(150);
    expect(fire).not.toHaveBeenCalled();
    vi.advanceTimersByTime(50);
    expect(fire).toHaveBeenCalledTimes(1);
  });

  it('max: a steady stream of changes still renders max after the first', () => {
    const fire = vi.fn();
    const s = createSchedule({ min: 200, max: 1000 }, fire);
    const firedAt: number[] = [];
    fire.mockImplementation(() => firedAt.push(Date.now()));
    const start = Date.now();
    for (let t = 0; t < 2500; t += 100) {
      s.poke();
      vi.advanceTimersByTime(100);
    }
    expect(firedAt[0]! - start).toBe(1000);
    expect(firedAt[1]! - start).toBe(2000);
    expect(fire).toHaveBeenCalledTimes(2);
  });

  it('without wait, merges the changes of one turn into one render', () => {
    const fire = vi.fn();
    const s = createSchedule(false, fire);
    s.poke();
    s.poke();
    s.poke();
    vi.advanceTimersByTime(0);
    expect(fire).toHaveBeenCalledTimes(1);
  });

  it('cancel drops a pending render', () => {
    const fire = vi.fn();
    const s = createSchedule({ min: 100, max: 100 }, fire);
    s.poke();
    s.cancel();
    vi.advanceTimersByTime(500);
    expect(fire).not.toHaveBeenCalled();
    expect(s.pending).toBe(false);
  });
});
