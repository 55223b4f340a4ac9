/** Polls `probe` until it returns a truthy value (returned) or the timeout passes (throws with `what`). */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  what: string,
  { timeout = 10_000, interval = 25 }: { timeout?: number; interval?: number } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeout;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const suffix = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${suffix}`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}
