/**
 * A member record as a Serf agent sends it over RPC (Go struct field names, `Addr` as raw bytes), for fake
 * agents in tests and for the decoding benchmark.
 */
export function serfMemberRecord(name: string, overrides: { addr?: readonly number[]; tags?: Record<string, string>; status?: string } = {}): Record<string, unknown> {
  return {
    Name: name,
    Addr: Buffer.from(overrides.addr ?? [10, 0, 0, 1]),
    Port: 7946,
    Tags: overrides.tags ?? { role: 'web' },
    Status: overrides.status ?? 'alive',
    ProtocolMin: 1,
    ProtocolMax: 5,
    ProtocolCur: 2,
    DelegateMin: 2,
    DelegateMax: 5,
    DelegateCur: 5,
  };
}
