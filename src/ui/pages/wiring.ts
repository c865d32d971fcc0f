// What both the volunteer page and the widget's frame build: the backend over this coordinator,
// the browser's sensors, and where the session token lives. The training worker and the mesh
// come from ./engine-wiring.ts.
import { CoordinatorVolunteerBackend } from '../browser/volunteer-backend.ts';
import { BrowserSensors } from '../browser/sensors.ts';
import { pickRun } from '../browser/runs.ts';
import type { SessionStore, WebSocketCtor } from '../../sync/signaling-client.ts';
import { createMesh, createTrainer } from './engine-wiring.ts';

/** localStorage, or null where the browser blocks it (then nothing is remembered). */
export function pageStorage(): Storage | null {
  try {
    const s = globalThis.localStorage;
    s.getItem('murmur.probe');
    return s;
  } catch {
    return null;
  }
}

function sessionStore(storage: Storage | null): SessionStore {
  let mem: string | null = null;
  return {
    load: () => { try { return storage?.getItem('murmur.session') ?? mem; } catch { return mem; } },
    save: (t) => {
      mem = t;
      try { if (t === null) storage?.removeItem('murmur.session'); else storage?.setItem('murmur.session', t); } catch { /* kept in memory */ }
    },
  };
}

export async function volunteerWiring(remember: boolean) {
  const baseUrl = location.origin;
  const runId = await pickRun(baseUrl, location.search);
  const storage = remember ? pageStorage() : null;
  const backend = new CoordinatorVolunteerBackend({
    baseUrl, runId, WebSocket: WebSocket as unknown as WebSocketCtor, session: sessionStore(storage), createTrainer, createMesh,
  });
  const sensors = await BrowserSensors.start();
  return { backend, sensors, storage, runId };
}
