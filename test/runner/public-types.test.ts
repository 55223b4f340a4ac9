import { describe, expectTypeOf, it } from 'vitest';
import type {
  CheckFailedEvent,
  CompiledTemplate,
  DroppedMember,
  GuardedEvent,
  ReloadedEvent,
  ReloadFailedEvent,
  Renderer,
  RenderedEvent,
  RendererErrorEvent,
  RendererEvents,
  RenderReport,
  ResolvedTemplate,
  SourceErrorEvent,
  TemplateStatus,
  UnchangedEvent,
} from '../../src/index.js';
import type { sanitizeMembers } from '../../src/index.js';

// Checked by the type checker (`npm run typecheck`): what public signatures return has a name users can import.
describe('public types', () => {
  it('name what the renderer returns and emits', () => {
    expectTypeOf<ReturnType<Renderer['templateStatus']>>().toEqualTypeOf<TemplateStatus[]>();
    expectTypeOf<RendererEvents['rendered']>().toEqualTypeOf<[event: RenderedEvent]>();
    expectTypeOf<RendererEvents['unchanged']>().toEqualTypeOf<[event: UnchangedEvent]>();
    expectTypeOf<RendererEvents['guarded']>().toEqualTypeOf<[event: GuardedEvent]>();
    expectTypeOf<RendererEvents['checkFailed']>().toEqualTypeOf<[event: CheckFailedEvent]>();
    expectTypeOf<RendererEvents['reloaded']>().toEqualTypeOf<[event: ReloadedEvent]>();
    expectTypeOf<RendererEvents['reloadFailed']>().toEqualTypeOf<[event: ReloadFailedEvent]>();
    expectTypeOf<RendererEvents['settled']>().toEqualTypeOf<[report: RenderReport]>();
    expectTypeOf<RendererEvents['sourceError']>().toEqualTypeOf<[event: SourceErrorEvent]>();
    expectTypeOf<RendererEvents['error']>().toEqualTypeOf<[event: RendererErrorEvent]>();
    expectTypeOf<ReloadedEvent['group']>().toEqualTypeOf<string[]>();
    expectTypeOf<ReloadFailedEvent['group']>().toEqualTypeOf<string[]>();
  });

  it('name the dropped members and the compiled template', () => {
    expectTypeOf<ReturnType<typeof sanitizeMembers>['dropped']>().toEqualTypeOf<DroppedMember[]>();
    expectTypeOf<ResolvedTemplate['compiled']>().toEqualTypeOf<CompiledTemplate>();
  });
});
