// Comlink sends a thrown Error across as {message, name, stack} only; the UI needs the typed
// fields too (GpuError.code picks the help text, LimitsTooSmallError names the limit). This
// replaces comlink's "throw" serializer so an error's own primitive fields travel with it.
// Installed by the worker; the page needs nothing (comlink's deserializer copies every field).
import * as Comlink from 'comlink';

type Thrown = { value: unknown };

export function installErrorTransfer(): void {
  const builtin = Comlink.transferHandlers.get('throw') as Comlink.TransferHandler<Thrown, unknown> | undefined;
  if (!builtin) throw new Error('comlink has no "throw" transfer handler to extend (comlink version changed?)');
  Comlink.transferHandlers.set('throw', {
    canHandle: builtin.canHandle,
    serialize(thrown: Thrown) {
      const e = thrown.value;
      if (!(e instanceof Error)) return builtin.serialize(thrown);
      const fields: Record<string, string | number | boolean> = {};
      for (const [k, v] of Object.entries(e)) if (['string', 'number', 'boolean'].includes(typeof v)) fields[k] = v as string | number | boolean;
      return [{ isError: true, value: { ...fields, message: e.message, name: e.name, stack: e.stack } }, []];
    },
    deserialize: builtin.deserialize,
  } as Comlink.TransferHandler<unknown, unknown>);
}
